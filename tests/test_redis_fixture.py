from common.redis_server import RedisServer


def test_private_server_is_not_the_default_port(redis_server: RedisServer, redis_client) -> None:
    assert redis_server.port != 6379
    redis_client.set("k", "v")
    assert redis_client.get("k") == "v"


def test_each_test_starts_clean(redis_client) -> None:
    assert redis_client.dbsize() == 0

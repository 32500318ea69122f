"""The session store on a real Redis Cluster of three masters (issue 10 point 6).

The contract suite (tests/test_store_contract.py) already runs against this cluster as its
``cluster`` backend; here: sessions spread over the masters' slots (the spec's keys carry no hash
tag), a session created through one server is resumed through another (each connected to the
cluster through a different node), and the URL handling.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import anyio
import pytest

from reference.server import NumberServer, ServerConfig
from reference.store import Lease, SessionRecord, StoreError, open_store
from reference.store.redis import DEFAULT_PREFIX, RedisStore

from .oracle import session_checksum, session_values
from .redis_fixture import _resp_command, free_port
from .support import RawReader, eventually, stateful_hello

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

Nodes = list[tuple[str, int]]
LONG_MS = 60_000


def cluster_url(node: tuple[str, int]) -> str:
    return f"redis+cluster://{node[0]}:{node[1]}"


async def node_command(port: int, *args: str) -> bytes:
    return await anyio.to_thread.run_sync(lambda: _resp_command(port, *args))


@pytest.fixture
async def store(redis_cluster_nodes: Nodes) -> AsyncIterator[RedisStore]:
    async with await RedisStore.connect(
        cluster_url(redis_cluster_nodes[0]), prefix=f"nspcluster:{uuid.uuid4().hex}:"
    ) as opened:
        yield opened


async def test_sessions_spread_over_every_master(
    store: RedisStore, redis_cluster_nodes: Nodes
) -> None:
    """60 sessions: every master holds some, and all are found again, refreshed and counted."""
    ids = [str(uuid.uuid4()) for _ in range(60)]
    for i, cid in enumerate(ids):
        await store.open_session(cid, SessionRecord(seed=i, n=i + 1), f"o{i}", LONG_MS)
    per_master = [int((await node_command(port, "DBSIZE"))[1:]) for _, port in redis_cluster_nodes]
    assert all(held > 0 for held in per_master), per_master
    assert sum(per_master) >= len(ids)  # other tests' sessions may live there too
    assert await store.count() == len(ids)
    assert await store.refresh_many([Lease(cid, f"o{i}") for i, cid in enumerate(ids)], LONG_MS)
    for i, cid in enumerate(ids):
        assert await store.get(cid) == SessionRecord(seed=i, n=i + 1)
        assert await store.complete(cid, f"o{i}")
    assert await store.count() == 0


async def test_refresh_many_keeps_order_across_pipelines(store: RedisStore) -> None:
    """1,200 leases take three pipelines on a cluster; each result lands at its own lease."""
    leases = [Lease(str(uuid.uuid4()), f"o{i}") for i in range(1200)]
    held = {0, 499, 500, 501, 999, 1000, 1199}
    for i in held:
        await store.open_session(leases[i].client_id, SessionRecord(seed=i, n=1), f"o{i}", LONG_MS)
    got = await store.refresh_many(leases, LONG_MS)
    assert [i for i, ok in enumerate(got) if ok] == sorted(held)


async def test_keys_have_no_hash_tag(redis_cluster_nodes: Nodes) -> None:
    """spec/STORE-REDIS.md: keys are nsp:v1:session:{client_id}, hashed whole, one slot each."""
    port = redis_cluster_nodes[0][1]
    slots = {
        int((await node_command(port, "CLUSTER", "KEYSLOT", f"{DEFAULT_PREFIX}session:{cid}"))[1:])
        for cid in (str(uuid.uuid4()) for _ in range(20))
    }
    assert len(slots) > 10


async def test_session_created_on_one_server_resumes_on_another(redis_cluster_nodes: Nodes) -> None:
    """Server A (entry node 0) creates and streams part; server B (entry node 2) resumes."""
    n, cut = 40, 17
    config = ServerConfig(interval=0.001, session_ttl=30.0)
    async with AsyncExitStack() as stack, anyio.create_task_group() as tg:
        stores = [
            await stack.enter_async_context(await RedisStore.connect(cluster_url(node)))
            for node in (redis_cluster_nodes[0], redis_cluster_nodes[2])
        ]
        ports = [await tg.start(NumberServer(config, store).serve) for store in stores]
        for _ in range(6):  # several client ids, so that several slots and masters take part
            client_id = str(uuid.uuid4())
            received: dict[int, int] = {}
            async with await anyio.connect_tcp("127.0.0.1", ports[0]) as stream:
                await stream.send(stateful_hello(client_id, n))
                reader = RawReader(stream)
                welcome = await reader.next()
                assert welcome is not None
                assert welcome.type == 0x02, welcome
                while len(received) < cut:
                    data = await reader.next()
                    assert data is not None
                    assert data.type == 0x03, data
                    index, value = struct.unpack_from(">II", data.payload)
                    received[index] = value
            record = await stores[1].get(client_id)  # through the other entry node
            assert record is not None
            assert record.n == n
            async with await anyio.connect_tcp("127.0.0.1", ports[1]) as stream:
                await stream.send(stateful_hello(client_id, n, resume=True, next_index=cut))
                reader = RawReader(stream)
                welcome = await reader.next()
                assert welcome is not None
                assert welcome.type == 0x02, welcome
                while True:
                    frame = await reader.next()
                    assert frame is not None
                    assert frame.type in (0x03, 0x04), frame
                    index, value = struct.unpack_from(">II", frame.payload)
                    received[index] = value
                    if frame.type == 0x04:
                        assert frame.payload[8:] == session_checksum(record.seed, n)
                        break
            assert [received[i] for i in range(n)] == session_values(record.seed, n)

            async def deleted(client_id: str = client_id) -> bool:
                return await stores[0].get(client_id) is None

            await eventually(deleted, within=10)  # completed: deleted after FINAL, seen anywhere
        tg.cancel_scope.cancel()


async def test_open_store_takes_a_cluster_url(redis_cluster_nodes: Nodes) -> None:
    store = await open_store(cluster_url(redis_cluster_nodes[1]))
    try:
        assert isinstance(store, RedisStore)
        assert await store.get(str(uuid.uuid4())) is None
    finally:
        await store.aclose()


async def test_unreachable_cluster_raises_store_error() -> None:
    with pytest.raises(StoreError, match="redis"):
        await RedisStore.connect(f"redis+cluster://127.0.0.1:{free_port()}", op_timeout=1.0)


async def test_cluster_url_without_a_host_is_refused() -> None:
    with pytest.raises(StoreError, match="bad redis URL"):
        await RedisStore.connect("redis+cluster:///0")


async def test_a_prefix_that_would_be_a_hash_tag_is_refused(redis_cluster_nodes: Nodes) -> None:
    with pytest.raises(ValueError, match="prefix"):
        await RedisStore.connect(cluster_url(redis_cluster_nodes[0]), prefix="nsp:{v1}:")

"""The retriever over a Chroma server (``chroma run``): the same answers as the embedded store, one index that several
processes share, a rebuild that never disturbs another process's queries, and BM25 answers while the server is away.

Servers are real: ``SOPAGENT_TEST_CHROMA_URL`` (a database of its own per test, see ``tests.chroma_server``), or a
private ``chroma run`` that the outage tests stop and start. Each ``Retriever`` opens its own HTTP client, as a
separate API or worker process would."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from knowledge.db import upsert
from knowledge.embeddings import HashingEmbedder
from knowledge.lexical import LexicalIndex
from knowledge.retriever import SEARCH_KINDS, Hit, Retriever, corpus
from knowledge.settings import Settings
from knowledge.tables import Product
from knowledge.vector_store import ChromaServer, open_client
from tests.chroma_server import ChromaProcess, chroma_database, free_port  # noqa: F401  (a fixture, used by server)

QUERIES = [("玻尿酸面霜多少钱", "products"), ("宝宝洗澡用什么", "products"), ("SKU-SE04 是什么", "products"),
           ("油皮夏天用什么面霜", "products"), ("美白精华推荐", "products"), ("多久能发货", "faq"),
           ("孕妇可以用吗", "faq"), ("发票怎么开", "faq"), ("买完就降价了能退差价吗", "policy"),
           ("收到东西破了怎么办", "policy"), ("不想要了可以退吗", "policy"), ("直播有优惠券吗", "promotions"),
           ("双十一满减还有吗", "promotions")]


class NearEmbedder(HashingEmbedder):
    """The hashing embedder, with ``nearest`` switched on: its scores mean nothing, but they come from the dense
    index alone, which is what these tests look at."""

    semantic = True


@pytest.fixture
def engine(demo_engine: Engine) -> Engine:
    return demo_engine


@pytest.fixture
def server(chroma_database: Callable[[], ChromaServer]) -> ChromaServer:  # noqa: F811  (the imported fixture)
    """A database of its own on the test server (``SOPAGENT_TEST_CHROMA_URL``), empty."""
    return chroma_database()


def ids(hits: list[Hit]) -> list[str]:
    return [h.id for h in hits]


def outage_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "sopagent.retrieval" and "unusable" in r.getMessage()]


def test_a_server_finds_the_same_hits_as_the_embedded_store(engine: Engine, tmp_path: Path, server: ChromaServer,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    embedded = Retriever(engine, tmp_path / "chroma", NearEmbedder())
    remote = Retriever(engine, server, NearEmbedder())
    for query, kind in QUERIES:
        assert ids(remote.search(query, kind, k=3)) == ids(embedded.search(query, kind, k=3)), query
        assert ids(remote.nearest(query, (kind,), k=3)) == ids(embedded.nearest(query, (kind,), k=3)), query
    assert remote.search("玻尿酸面霜多少钱", "products")[0].id == "SKU-CR01"
    # the vectors are on the server, and the dense side answered every query
    stored = open_client(server)
    assert {kind: stored.get_collection(f"{kind}-hash-bigram").count() for kind in SEARCH_KINDS} == \
        {kind: len(corpus(engine, kind)) for kind in SEARCH_KINDS}
    assert outage_lines(caplog) == []


def test_two_processes_on_one_server_share_one_index(engine: Engine, server: ChromaServer) -> None:
    first = Retriever(engine, server, NearEmbedder())
    second = Retriever(engine, server, NearEmbedder())
    assert first.sync() == second.sync()
    stored = open_client(server)
    assert sorted(c.name for c in stored.list_collections()) == sorted(f"{k}-hash-bigram" for k in SEARCH_KINDS)
    assert second.indexed("products") == first.indexed("products") == len(corpus(engine, "products"))

    # the first process renames a product and re-indexes: the second one's dense queries see the new vector
    with engine.begin() as conn:
        upsert(conn, Product.__table__, [{"sku": "SKU-CR01", "name": "北极冰川雪莲冻龄霜", "category": "面霜",
                                          "price": 199, "stock": 5, "description": "北极冰川雪莲", "usage": "",
                                          "suitable_for": "", "status": "on_sale"}])
    first.sync(["products"])
    assert second.nearest("北极冰川雪莲冻龄霜", ("products",), k=1)[0].id == "SKU-CR01"
    # the first process takes it off sale: it is gone from the shared index, for the second process too
    with engine.begin() as conn:
        upsert(conn, Product.__table__, [{"sku": "SKU-CR01", "name": "北极冰川雪莲冻龄霜", "category": "面霜",
                                          "price": 199, "stock": 0, "description": "北极冰川雪莲", "usage": "",
                                          "suitable_for": "", "status": "off_sale"}])
    first.sync(["products"])
    assert "SKU-CR01" not in ids(second.nearest("北极冰川雪莲冻龄霜", ("products",), k=5))
    assert second.indexed("products") == len(corpus(engine, "products"))


def test_a_rebuild_while_another_process_queries_never_raises(engine: Engine, server: ChromaServer) -> None:
    builder = Retriever(engine, server, NearEmbedder())
    reader = Retriever(engine, server, NearEmbedder(), retry_seconds=0)
    builder.sync()
    reader.sync()
    admin = open_client(server)
    answered = threading.Condition()
    answers: list[list[str]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                hits = ids(reader.search("玻尿酸面霜多少钱", "products"))
                reader.nearest("玻尿酸面霜多少钱", ("products", "faq"))
            except BaseException as exc:  # noqa: BLE001 — what the test is looking for
                errors.append(exc)
                hits = []
            with answered:
                answers.append(hits)
                answered.notify_all()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    try:
        for _ in range(5):  # drop the collection and build it again, while the reader keeps asking
            with answered:
                seen = len(answers)
            admin.delete_collection("products-hash-bigram")
            builder.sync(["products"])
            with answered:
                assert answered.wait_for(lambda seen=seen: len(answers) >= seen + 2, timeout=60)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert errors == []
    assert all("SKU-CR01" in hits for hits in answers)
    # afterwards: one collection, each document once, and the reader's dense side answers
    assert admin.get_collection("products-hash-bigram").count() == len(corpus(engine, "products"))
    assert reader.nearest("玻尿酸水润保湿面霜", ("products",), k=1)[0].id == "SKU-CR01"


def test_an_unreachable_server_degrades_to_the_lexical_ranking(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    down = Retriever(engine, f"http://127.0.0.1:{free_port()}", NearEmbedder(), retry_seconds=0)
    for query, kind in QUERIES:
        docs = corpus(engine, kind)
        bm25 = LexicalIndex([d.id for d in docs], [f"{d.title} {d.text}" for d in docs])
        hits = down.search(query, kind, k=3)
        assert ids(hits) == [i for i, _ in bm25.search(query, 3)] != [], query  # the BM25 ranking, as it is
        assert down.nearest(query, (kind,)) == []
    assert down.search("玻尿酸面霜多少钱", "products")[0].id == "SKU-CR01"
    assert down.indexed("products") == 0
    assert len(outage_lines(caplog)) == 1  # one line per outage, however many queries


def test_retrieval_comes_back_with_the_server(engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    chroma = ChromaProcess(tmp_path / "chroma-data")
    retriever = Retriever(engine, chroma.url, NearEmbedder(), retry_seconds=0)
    try:
        # not started yet: BM25 answers
        assert retriever.search("玻尿酸面霜多少钱", "products")[0].id == "SKU-CR01"
        assert retriever.nearest("玻尿酸水润保湿面霜", ("products",)) == []
        chroma.start()
        assert retriever.nearest("玻尿酸水润保湿面霜", ("products",), k=1)[0].id == "SKU-CR01"
        chroma.stop()
        assert retriever.search("玻尿酸面霜多少钱", "products")[0].id == "SKU-CR01"
        assert retriever.nearest("玻尿酸水润保湿面霜", ("products",)) == []
        chroma.start(tmp_path / "chroma-data-restored-empty")  # back, but without its data: filled again
        assert retriever.nearest("玻尿酸水润保湿面霜", ("products",), k=1)[0].id == "SKU-CR01"
        assert retriever.indexed("products") == len(corpus(engine, "products"))
    finally:
        chroma.stop()
    messages = [r.getMessage() for r in caplog.records if r.name == "sopagent.retrieval"]
    assert len(outage_lines(caplog)) == 2 and sum("answers again" in m for m in messages) == 2, messages


def test_the_chroma_url_setting_takes_only_scheme_host_and_port() -> None:
    assert Settings(chroma_url="http://127.0.0.1:8001/").chroma_url == "http://127.0.0.1:8001"
    assert Settings(chroma_url=" ").chroma_url is None
    assert ChromaServer.from_url("https://chroma.internal:443") == ChromaServer("chroma.internal", 443, ssl=True)
    for bad, why in [("127.0.0.1:8001", "scheme"), ("ftp://h:1", "scheme"), ("http://:8001", "no host"),
                     ("http://h", "give the port"), ("http://h:99999", "port must be"),
                     ("http://h:8001/api/v2", "no path"), ("http://u:p@h:8001", "credentials")]:
        with pytest.raises(ValueError, match=why):
            Settings(chroma_url=bad)


def test_a_customer_turn_is_answered_while_the_configured_server_is_down(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    from agent.runtime import Runtime
    from knowledge.clock import SimClock
    from knowledge.tables import Customer
    from tests.agent.conftest import say
    from tests.conftest import MONDAY_15_SHANGHAI

    port = free_port()  # SOPAGENT_CHROMA_URL names a server that is not there
    runtime = Runtime.build(Settings(home=tmp_path / "home", embedder="hash", burst_window_seconds=0,
                                     chroma_url=f"http://127.0.0.1:{port}"), clock=SimClock(MONDAY_15_SHANGHAI))
    assert runtime.conversation is not None and runtime.conversation.retriever is not None
    assert runtime.conversation.retriever.store == ChromaServer("127.0.0.1", port)
    runtime.load_demo_shop()
    with runtime.deps.engine.begin() as conn:
        conn.execute(Customer.__table__.insert().values(id="c_demo_wang", name="王女士", added_at=MONDAY_15_SHANGHAI,
                                                        stage="active", attributes={}))
    (reply,) = say(runtime, "玻尿酸面霜多少钱？")
    assert "玻尿酸水润保湿面霜" in reply and "¥199" in reply
    assert len(outage_lines(caplog)) == 1

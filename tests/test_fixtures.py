from __future__ import annotations

import sqlalchemy as sa


def test_postgres_cluster_answers_queries(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg2://"))
    with engine.connect() as conn:
        assert conn.execute(sa.text("select 40 + 2")).scalar() == 42
    engine.dispose()

"""The shell as a person sees it: errors at the user's own line, result tables, readable
reprs, the preloaded helpers, the banner.

Real databases (SQLite file, PostgreSQL, MariaDB), a real ``python -m myfy_db`` process, and a
pseudo-terminal for the interactive shell.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from helpers import backend_of, run_process
from test_shell import _Pty

MODELS = """
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str | None] = mapped_column(String(100))
    books: Mapped[list["Book"]] = relationship(back_populates="author")


class Book(Base):
    __tablename__ = "books"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"), index=True)
    title: Mapped[str] = mapped_column(String(200), server_default="untitled")
    author: Mapped[Author] = relationship(back_populates="books")
"""

DUPLICATE = (
    "session.add(Author(id=2, email='ann@example.com', name='dup'))\n"
    "await session.commit()\n"
    "print('not reached')"
)
DUPLICATE_MESSAGE = {
    "sqlite": "IntegrityError: UNIQUE constraint failed: authors.email",
    "postgresql": 'duplicate key value violates unique constraint "authors_email_key"',
    "mysql": "Duplicate entry 'ann@example.com' for key 'email'",
}


def _run(url: str, *statements: str) -> None:
    async def go() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                for statement in statements:
                    await conn.execute(text(statement))
        finally:
            await engine.dispose()

    asyncio.run(go())


@pytest.fixture
def authors(db_url: str, tmp_path: Path) -> str:
    """``db_url`` holding the authors/books schema (``models:Base`` in the working directory)
    with ann and bob, ann having two books."""
    (tmp_path / "models.py").write_text(MODELS)

    async def go() -> None:
        import importlib
        import sys

        sys.path.insert(0, str(tmp_path))
        try:
            models = importlib.import_module("models")
            engine = create_async_engine(db_url)
            try:
                async with engine.begin() as conn:
                    await conn.run_sync(models.Base.metadata.create_all)
            finally:
                await engine.dispose()
        finally:
            sys.path.remove(str(tmp_path))
            sys.modules.pop("models", None)

    asyncio.run(go())
    _run(
        db_url,
        "INSERT INTO authors (id, email, name) VALUES (1, 'ann@example.com', 'Ann')",
        "INSERT INTO authors (id, email, name) VALUES (3, 'bob@example.com', NULL)",
        "INSERT INTO books (id, author_id, title) VALUES (10, 1, 'First')",
        "INSERT INTO books (id, author_id, title) VALUES (11, 1, 'Second')",
    )
    return db_url


def shell(
    url: str,
    code: str,
    *extra: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> tuple[int, str, str]:
    args = ["shell", "--url", url, "--metadata", "models:Base", *extra, "-c", code]
    result = run_process(*args, cwd=str(cwd) if cwd else None, env=env)
    return result.returncode, result.stdout, result.stderr


# -- results as tables, readable objects ---------------------------------------------------

AUTHORS_TABLE = (
    " id | email           | name\n"
    "----+-----------------+------\n"
    "  1 | ann@example.com | Ann\n"
    "  3 | bob@example.com | NULL\n"
    "(2 rows)\n"
)


@pytest.mark.parametrize(
    "code",
    [
        "await session.execute(select(Author).order_by(Author.id))",
        "await session.scalars(select(Author).order_by(Author.id))",
        "(await session.scalars(select(Author).order_by(Author.id))).all()",
        "(await session.execute(select(Author.id, Author.email, Author.name)"
        ".order_by(Author.id))).all()",
        "await session.execute(text('SELECT id, email, name FROM authors ORDER BY id'))",
    ],
    ids=["result", "scalar-result", "objects", "rows", "text"],
)
def test_results_print_as_a_table(code: str, authors: str, tmp_path: Path) -> None:
    status, out, err = shell(authors, code, cwd=tmp_path)
    assert status == 0, err
    assert out == AUTHORS_TABLE


@pytest.mark.parametrize(
    ("code", "shown"),
    [
        ("await session.execute(text(\"UPDATE authors SET name = 'Al'\"))", "2 rows affected"),
        (
            "await session.execute(text(\"INSERT INTO authors (id, email) VALUES (7, 'c@x')\"))",
            "1 row affected",
        ),
        ("await session.execute(text('DELETE FROM authors WHERE id = 99'))", "0 rows affected"),
    ],
    ids=["update", "insert", "delete-nothing"],
)
def test_a_statement_without_rows_prints_what_it_did(
    code: str, shown: str, authors: str, tmp_path: Path
) -> None:
    status, out, err = shell(authors, code, cwd=tmp_path)
    assert status == 0, err
    assert out == shown + "\n"
    assert "unexpected" not in err


def test_a_scalar_list_prints_as_one_column(authors: str, tmp_path: Path) -> None:
    code = "(await session.scalars(select(Author.email).order_by(Author.id))).all()"
    status, out, err = shell(authors, code, cwd=tmp_path)
    assert status == 0, err
    assert out == " value\n-----------------\n ann@example.com\n bob@example.com\n(2 rows)\n"


def test_a_long_result_is_cut_with_a_note_of_what_was_left_out(
    authors: str, tmp_path: Path
) -> None:
    code = "await session.execute(select(Book.id, Book.title).order_by(Book.id))"
    status, out, err = shell(authors, code, cwd=tmp_path, env={"MYFY_DB_SHELL_MAX_ROWS": "1"})
    assert status == 0, err
    assert out.splitlines() == [
        " id | title",
        "----+-------",
        " 10 | First",
        "(2 rows; 1 left out, showing the first 1: set MYFY_DB_SHELL_MAX_ROWS to see more)",
    ]


def test_a_mapped_object_reads_by_its_columns_only_in_the_shell(
    authors: str, tmp_path: Path
) -> None:
    code = "a = await session.get(Author, 1)\nprint(repr(a).split(' at ')[0])\n(a, [a])"
    status, out, err = shell(authors, code, cwd=tmp_path)
    assert status == 0, err
    readable = "Author(id=1, email='ann@example.com', name='Ann')"
    assert out == f"<models.Author object\n({readable}, [{readable}])\n"


def test_the_readable_repr_leaves_the_class_alone(tmp_path: Path) -> None:
    import importlib
    import sys

    from myfy_db.shell.display import shell_repr

    (tmp_path / "models.py").write_text(MODELS)
    sys.path.insert(0, str(tmp_path))
    try:
        models = importlib.import_module("models")
        author = models.Author(id=7, email="eve@example.com")
        assert shell_repr(author) == "Author(id=7, email='eve@example.com')"
        assert repr(author).startswith("<models.Author object at 0x")
        assert models.Author.__repr__ is object.__repr__
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("models", None)


def test_interactive_results_are_tables_and_objects_readable(authors: str, tmp_path: Path) -> None:
    env = {"MYFY_DB_HISTORY_FILE": str(tmp_path / "history")}
    console = _Pty(["shell", "--url", authors, "--metadata", "models:Base"], env=env, cwd=tmp_path)
    console.expect(">>> ")
    console.send("await session.execute(select(Author).order_by(Author.id))")
    shown = console.expect(">>> ").replace("\r", "")
    assert AUTHORS_TABLE in shown
    console.send("len(_)")
    assert "\n2\n" in console.expect(">>> ").replace("\r", "")
    console.send("await session.get(Author, 3)")
    assert "Author(id=3, email='bob@example.com', name=None)" in console.expect(">>> ")
    console.send("exit()")
    assert console.wait() == 0


# -- the helpers --------------------------------------------------------------------------


def test_tables_lists_tables_with_row_counts(authors: str, tmp_path: Path) -> None:
    status, out, err = shell(authors, "tables()", cwd=tmp_path)
    assert status == 0, err
    assert out.splitlines() == [
        " table   | rows",
        "---------+------",
        " authors | 2",
        " books   | 2",
        "(2 tables)",
    ]


def test_describe_shows_columns_keys_indexes_and_foreign_keys(authors: str, tmp_path: Path) -> None:
    code = "print(await describe('authors'))\ndescribe(Book)"
    status, out, err = shell(authors, code, cwd=tmp_path)
    assert status == 0, err
    authors_part, books_part = out.split('Table "books"')
    books = books_part.splitlines()
    assert books[0] == ""
    assert books[1].split() == ["column", "|", "type", "|", "nullable", "|", "default"]
    title = next(line for line in books if line.startswith(" title"))
    assert title.split("|")[1].strip() == "VARCHAR(200)"
    assert title.split("|")[2].strip() == "not null"
    assert "untitled" in title.split("|")[3]
    assert "Primary key: (id)" in books
    assert '    "ix_books_author_id" (author_id)' in books
    assert "    (author_id) REFERENCES authors(id)" in books
    authors_lines = authors_part.splitlines()
    assert authors_lines[0] == 'Table "authors"'
    name = next(line for line in authors_lines if line.startswith(" name"))
    assert [cell.strip() for cell in name.split("|")][:3] == ["name", "VARCHAR(100)", "null"]
    assert any(line.endswith("UNIQUE (email)") for line in authors_lines)
    assert "    books(author_id) -> (id)" in authors_lines


def test_describe_an_unknown_table_says_so(authors: str, tmp_path: Path) -> None:
    status, _, err = shell(authors, "x = 1\nawait describe('nowhere_t')", cwd=tmp_path)
    assert status == 1
    assert "no table 'nowhere_t' in the database (tables() lists them)" in err
    assert "at line 2 of the code: await describe('nowhere_t')" in err


def test_sql_runs_raw_sql_with_parameters_and_prints_the_rows(authors: str, tmp_path: Path) -> None:
    code = "sql('SELECT id, email FROM authors WHERE id = :wanted', wanted=3)"
    status, out, err = shell(authors, code, cwd=tmp_path)
    assert status == 0, err
    assert out == " id | email\n----+-----------------\n  3 | bob@example.com\n(1 row)\n"


def test_helpers_go_through_the_sandboxed_session(authors: str, tmp_path: Path) -> None:
    code = (
        "print(await sql(\"INSERT INTO authors (id, email) VALUES (9, 'zed@example.com')\"))\n"
        "sql('SELECT count(*) AS n FROM authors')"
    )
    status, out, err = shell(authors, code, "--sandbox", cwd=tmp_path)
    assert status == 0, err
    assert out == "1 row affected\n n\n---\n 3\n(1 row)\n"
    status, out, err = shell(authors, "tables()", cwd=tmp_path)
    assert " authors | 2" in out.splitlines()


def test_helpers_respect_read_only(authors: str, tmp_path: Path) -> None:
    code = "sql(\"UPDATE authors SET name = 'x'\")"
    status, _, err = shell(authors, code, "--read-only", cwd=tmp_path)
    assert status == 1
    assert any(word in err for word in ("read-only", "READ ONLY", "readonly"))


def test_help_lists_the_helpers(sqlite_url: str) -> None:
    result = run_process("shell", "--url", sqlite_url, "-c", "help()")
    assert result.returncode == 0, result.stderr
    for name in ("tables()", "describe(name_or_model)", "sql('SELECT ...'", "help()"):
        assert name in result.stdout


def test_interactive_banner_names_help_and_describe_works_at_the_prompt(
    authors: str, tmp_path: Path
) -> None:
    env = {"MYFY_DB_HISTORY_FILE": str(tmp_path / "history")}
    console = _Pty(["shell", "--url", authors, "--metadata", "models:Base"], env=env, cwd=tmp_path)
    banner = console.expect(">>> ")
    assert "help() lists them" in banner
    console.send("await describe(Author)")
    described = console.expect(">>> ").replace("\r", "")
    assert 'Table "authors"' in described
    assert "Referenced by:\n    books(author_id) -> (id)" in described
    console.send("await tables()")
    assert " books   | 2" in console.expect(">>> ").replace("\r", "")
    console.send("exit()")
    assert console.wait() == 0


def _shell_connection_states(url: str) -> list[str]:
    """The states of the shell's connections to ``url``'s database (PostgreSQL)."""
    from helpers import server_for

    database = make_url(url).database
    rows = server_for("postgresql").admin(
        "SELECT state FROM pg_stat_activity "
        f"WHERE datname = '{database}' AND application_name LIKE 'myfy-db shell%'"
    )
    return [str(row[0]) for row in rows[0]]


def test_helpers_at_the_prompt_follow_the_shells_session_model(
    authors: str, tmp_path: Path
) -> None:
    env = {"MYFY_DB_HISTORY_FILE": str(tmp_path / "history")}
    console = _Pty(["shell", "--url", authors, "--metadata", "models:Base"], env=env, cwd=tmp_path)
    console.expect(">>> ")
    console.send("describe(Author)")
    assert 'Table "authors"' in console.expect(">>> ")
    console.send("tables()")
    assert " books   | 2" in console.expect(">>> ").replace("\r", "")
    if backend_of(authors) == "postgresql":
        # The helpers' reads ended with the input: the shell holds no transaction.
        assert _shell_connection_states(authors) == ["idle"]
    console.send("sql(\"UPDATE authors SET name = 'Zed' WHERE id = 3\")")
    assert "1 row affected" in console.expect("myfy-db*> ")
    console.send("await session.commit()")
    console.expect(">>> ")
    console.send("sql('SELECT name FROM authors WHERE id = 3')")
    assert "Zed" in console.expect(">>> ")
    console.send("exit()")
    assert console.wait() == 0


# -- errors point at the user's code ------------------------------------------------------


def test_error_names_the_users_line_and_the_servers_message(authors: str, tmp_path: Path) -> None:
    status, out, err = shell(authors, DUPLICATE, cwd=tmp_path)
    assert status == 1
    assert out == ""
    lines = err.splitlines()
    assert DUPLICATE_MESSAGE[backend_of(authors)] in lines[0]
    assert lines[-1] == "at line 2 of the code: await session.commit()"
    if backend_of(authors) == "postgresql":
        assert "DETAIL: Key (email)=(ann@example.com) already exists." in lines
    for library_text in ("return target", "sqlalchemy", "[SQL:", "Traceback"):
        assert library_text not in err


def test_traceback_flag_shows_the_library_frames(sqlite_url: str, tmp_path: Path) -> None:
    (tmp_path / "models.py").write_text(MODELS)
    code = "await session.execute(text('SELECT * FROM nowhere_t'))"
    result = run_process("--traceback", "shell", "--url", sqlite_url, "-c", code, cwd=str(tmp_path))
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "sqlalchemy" in result.stderr
    assert "no such table: nowhere_t" in result.stderr


def test_error_in_a_function_defined_in_the_snippet_names_the_failing_line(
    sqlite_url: str,
) -> None:
    code = "def f():\n    x = 1\n    return x / 0\n\nf()"
    result = run_process("shell", "--url", sqlite_url, "-c", code)
    assert result.returncode == 1
    assert "at line 3 of the code: return x / 0" in result.stderr


def test_interactive_error_names_the_line_of_the_input(authors: str, tmp_path: Path) -> None:
    env = {"MYFY_DB_HISTORY_FILE": str(tmp_path / "history")}
    console = _Pty(["shell", "--url", authors, "--metadata", "models:Base"], env=env, cwd=tmp_path)
    console.expect(">>> ")
    console.send("async def add_twice():")
    console.send("    session.add(Author(id=2, email='ann@example.com'))")
    console.send("    await session.flush()")
    console.send("")
    console.expect(">>> ")
    console.send("await add_twice()")
    report = console.expect(">>> ")
    assert DUPLICATE_MESSAGE[backend_of(authors)] in report
    assert "at line 3 of the input: await session.flush()" in report
    assert "Traceback" not in report
    assert "sqlalchemy" not in report
    console.send("exit()")
    assert console.wait() == 0


# -- small things ----------------------------------------------------------------------


def test_protected_banner_line_starts_with_the_environment(sqlite_url: str, tmp_path: Path) -> None:
    env = {"MYFY_DB_HISTORY_FILE": str(tmp_path / "h"), "MYFY_DATA_ENVIRONMENT": "production"}
    console = _Pty(["shell", "--url", sqlite_url], env=env)
    banner = console.expect(">>> ")
    assert "\nenvironment: production (PROTECTED)" in banner.replace("\r", "")
    console.send("exit()")
    assert console.wait() == 0


def test_no_sandbox_without_a_terminal_says_so_in_a_sentence(sqlite_url: str) -> None:
    env = {"MYFY_DATA_ENVIRONMENT": "production"}
    result = run_process("shell", "--no-sandbox", "--url", sqlite_url, "-c", "1", env=env)
    assert result.returncode == 3
    assert result.stderr.splitlines()[0] == (
        "Error: A shell on the production database WITHOUT a sandbox (every change it commits "
        "is permanent) needs confirmation and there is no terminal"
    )

"""What a new user met (issue 22): piped output is never cut, piped shell code gets no prompts
on stdout, and the shell's advice, suggestions and displays fit the user's own models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import run_process

MODELS = """
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    books: Mapped[list["Book"]] = relationship()


class Book(Base):
    __tablename__ = "books"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"))
    title: Mapped[str] = mapped_column(String(200))
"""


def _library(tmp_path: Path) -> str:
    (tmp_path / "plain_models.py").write_text(MODELS)
    url = f"sqlite+aiosqlite:///{tmp_path / 'library.db'}"
    args = ("--url", url, "--metadata", "plain_models:Base")
    assert run_process("create-tables", *args, cwd=str(tmp_path)).returncode == 0
    return url


def _shell(tmp_path: Path, url: str, code: str) -> subprocess.CompletedProcess[str]:
    args = ("shell", "--url", url, "--metadata", "plain_models:Base", "-c", code)
    return run_process(*args, cwd=str(tmp_path))


def test_config_piped_shows_the_whole_database_url(tmp_path: Path) -> None:
    url = (
        "postgresql+asyncpg://someone@a-rather-long-host-name.internal.example.com:5432/"
        "a_long_database_name_that_ci_must_see_whole"
    )
    result = run_process("config", "--url", url, env={"COLUMNS": "80"}, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert url in result.stdout
    assert "…" not in result.stdout


def test_code_piped_into_the_shell_puts_no_prompt_on_stdout(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "myfy_db", "shell", "--url", "sqlite+aiosqlite:///:memory:"],
        input="1+1\nprint('x')\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "2\nx\n"


def test_lazy_load_advice_names_async_attrs_when_the_model_lacks_it(tmp_path: Path) -> None:
    url = _library(tmp_path)
    assert (
        _shell(tmp_path, url, "session.add(Author(id=1))\nawait session.commit()").returncode == 0
    )
    code = (
        "import asyncio\na = (await session.scalars(select(Author))).one()\n"
        "async def count():\n    return len(a.books)\n"
        "await asyncio.create_task(count())"
    )
    result = _shell(tmp_path, url, code)
    assert result.returncode == 1
    assert "selectinload(Author.books)" in result.stderr
    assert "AsyncAttrs" in result.stderr
    assert "await obj.awaitable_attrs" not in result.stderr
    assert "Traceback" not in result.stderr


def test_describe_suggests_the_table_meant(tmp_path: Path) -> None:
    result = _shell(tmp_path, _library(tmp_path), 'describe("book")')
    assert result.returncode == 1
    assert "did you mean 'books'?" in result.stderr


def test_a_select_prints_as_its_sql(tmp_path: Path) -> None:
    result = _shell(tmp_path, _library(tmp_path), "select(Book).where(Book.title == 'x')")
    assert result.returncode == 0, result.stderr
    sql = "SELECT books.id, books.author_id, books.title FROM books WHERE books.title = 'x'"
    assert " ".join(result.stdout.split()) == sql


def test_an_empty_entity_result_shows_the_tables_columns(tmp_path: Path) -> None:
    result = _shell(tmp_path, _library(tmp_path), "await session.execute(select(Book))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split() == ["id", "|", "author_id", "|", "title"]
    assert result.stdout.splitlines()[-1] == "(0 rows)"

"""``migrate lint`` beside squawk, revision by revision, on a real project's chain.

Not a test: it needs a throwaway venv holding the package whose migrations are linted,
myfy-db and squawk (PyPI ``squawk-cli``), e.g.::

    python3 -m venv /tmp/chain && /tmp/chain/bin/pip install -e . prefect squawk-cli
    /tmp/chain/bin/python tests/benchmarks/compare_squawk.py --config /tmp/p/alembic.ini

For each revision, Alembic renders its offline SQL for PostgreSQL (``upgrade PREV:REV
--sql``, the file a DBA would apply) and squawk judges that file on its own, as ``migrate
lint`` judges each revision on its own. squawk's rules are mapped onto lint's where both
name the same hazard; the report counts where the two agree and lists every disagreement.
Revisions that cannot render offline are left out of both sides (squawk sees no SQL).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

#: squawk's rule -> the lint rule that names the same hazard.
SAME_HAZARD = {
    "require-concurrent-index-creation": "PG001",
    "require-concurrent-index-deletion": "PG002",
    "adding-required-field": "PG003",
    "adding-field-with-default": "PG004",
    "changing-column-type": "PG006",
    "adding-not-nullable-field": "PG007",
    "constraint-missing-not-valid": "PG008",
    "adding-foreign-key-constraint": "PG008",
    "disallowed-unique-constraint": "PG009",
    "adding-serial-primary-key-field": "PG009",
    "ban-concurrent-index-creation-in-transaction": "PG010",
    "renaming-column": "DB002",
    "renaming-table": "DB002",
    "identifier-too-long": "PG012",
    "ban-drop-column": "DB001",
    "ban-drop-table": "DB001",
}
#: squawk's rules with no lint counterpart on purpose: style preferences, and the timeouts
#: that myfy-db sets itself on every revision it runs (and renders into --sql).
NOT_COMPARED = {
    "require-lock-timeout": "myfy-db sets lock_timeout on every revision (--ddl-lock-timeout)",
    "require-statement-timeout": "myfy-db sets statement_timeout (--statement-timeout)",
    "prefer-robust-stmts": "idempotence; lint asks it only of CONCURRENTLY builds (PG013)",
    "prefer-bigint-over-int": "a style preference",
    "prefer-bigint-over-smallint": "a style preference",
    "prefer-identity": "a style preference",
    "prefer-text-field": "a style preference",
    "prefer-timestamptz": "a style preference",
    "ban-char-field": "a style preference",
    "transaction-nesting": "Alembic owns the transactions",
    "renaming-object": "renaming an index or constraint breaks no running code",
    "ban-drop-constraint": "dropping a constraint breaks no running code",
    "ban-drop-not-null": "dropping NOT NULL breaks no running code",
    "ban-drop-default": "dropping a default: compatibility, not a lock or a rewrite",
    "require-enum-value-ordering": "a style preference",
}

#: Where squawk reports a hazard lint does not, and why lint is right there.
WHY_SQUAWK_ONLY = {
    "PG006": "squawk flags every ALTER COLUMN TYPE; PostgreSQL rewrites the table only for "
    "a change that is not binary coercible (a same-type change, VARCHAR widening and "
    "VARCHAR to TEXT are free: tests/test_lint_rewrite_truth.py holds PG006 to the server)",
}


def _revisions(config: str) -> list[tuple[str, str]]:
    """(down, revision) for every revision, oldest first (one head)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(Config(config))
    walked = list(reversed(list(script.walk_revisions("base", "heads"))))
    pairs = []
    for item in walked:
        down = item.down_revision
        down_text = "base" if down is None else down if isinstance(down, str) else down[0]
        pairs.append((down_text, item.revision))
    return pairs


def _offline_sql(config: str, url: str, down: str, revision: str) -> str | None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy.engine import make_url

    buffer = io.StringIO()
    cfg = Config(config, output_buffer=buffer)
    # rendered for PostgreSQL whatever the packaged ini names (optuna ships sqlite:///)
    plain = make_url(url).set(drivername="postgresql")
    cfg.set_main_option("sqlalchemy.url", plain.render_as_string(hide_password=False))
    try:
        target = revision if down == "base" else f"{down}:{revision}"
        command.upgrade(cfg, target, sql=True)
    except Exception:
        return None
    return buffer.getvalue()


#: squawk's rules for a statement that adds a UNIQUE or PRIMARY KEY constraint.
_KEYS = {"disallowed-unique-constraint", "adding-serial-primary-key-field"}


def _squawk(sql: str) -> list[str]:
    squawk = str(Path(sys.executable).parent / "squawk")
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as handle:
        handle.write(sql)
    try:
        done = subprocess.run(
            [squawk, "--reporter", "json", handle.name],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        os.unlink(handle.name)
    if not done.stdout.strip():
        return []
    by_statement: dict[int, set[str]] = {}
    for item in json.loads(done.stdout):
        by_statement.setdefault(int(item["line"]), set()).add(str(item["rule_name"]))
    rules = []
    for found in by_statement.values():
        if "constraint-missing-not-valid" in found and found & _KEYS:
            # squawk is wrong here: PostgreSQL refuses NOT VALID on a UNIQUE or PRIMARY
            # KEY constraint ("constraints cannot be marked NOT VALID"); the hazard is
            # the index build under lock, PG009's.
            found.discard("constraint-missing-not-valid")
        rules.extend(sorted(found))
    return rules


def _lint(config: str, url: str) -> dict[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-m", "myfy_db", "migrate", "lint", "base:heads", "--offline",
         "--json", "--fail-on", "never", "--config", config, "--url", url],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"migrate lint failed ({done.returncode}): {done.stderr.strip()}")
    found: dict[str, list[str]] = {}
    for finding in json.loads(done.stdout)["findings"]:
        found.setdefault(finding["revision"], []).append(finding["rule"])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the chain's alembic.ini")
    parser.add_argument("--url", default="postgresql+asyncpg://lint@127.0.0.1:1/nowhere")
    args = parser.parse_args()

    ours = _lint(args.config, args.url)
    agree, only_squawk, only_lint = Counter[str](), Counter[str](), Counter[str]()
    skipped, compared, examples = 0, 0, []
    not_compared = Counter[str]()
    for down, revision in _revisions(args.config):
        sql = _offline_sql(args.config, args.url, down, revision)
        lint_rules = set(ours.get(revision, []))
        if sql is None or "DB006" in lint_rules:
            skipped += 1
            continue
        compared += 1
        theirs = _squawk(sql)
        mapped = {SAME_HAZARD[r] for r in theirs if r in SAME_HAZARD}
        not_compared.update(r for r in theirs if r not in SAME_HAZARD)
        comparable = lint_rules & set(SAME_HAZARD.values())
        for rule in sorted(mapped | comparable):
            if rule in mapped and rule in comparable:
                agree[rule] += 1
            elif rule in mapped:
                only_squawk[rule] += 1
                why = WHY_SQUAWK_ONLY.get(rule, "")
                examples.append(
                    f"  {revision}: squawk only ({rule}): {sorted(set(theirs))}"
                    + (f"\n      {why}" if why else "")
                )
            else:
                only_lint[rule] += 1
                examples.append(f"  {revision}: lint only ({rule})")
    print(f"{compared} revisions compared, {skipped} left out (no offline SQL)")
    print(f"agree: {sum(agree.values())} {dict(agree)}")
    print(f"squawk only: {sum(only_squawk.values())} {dict(only_squawk)}")
    print(f"lint only: {sum(only_lint.values())} {dict(only_lint)}")
    print("squawk rules not compared: " + ", ".join(f"{k} x{v}" for k, v in not_compared.items()))
    print("\n".join(examples))


if __name__ == "__main__":
    main()

"""A plugin's tree as Alembic sees it: its `ScriptDirectory` (checked against migrator's own
reading), the `Config` its revisions see, and a revision file's checksum."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrator.errors import TreeError
from migrator.logs import first_line, get_logger

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory
    from alembic.script.revision import RevisionMap

    from migrator.discovery import Plugin


def load_script(plugin: Plugin) -> ScriptDirectory:
    """Alembic's view of the tree (imports every revision module), checked against ours."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    script = ScriptDirectory(str(plugin.path), version_locations=[str(plugin.versions_dir)])
    try:
        heads = script.get_heads()  # builds the revision map: imports every revision module
        for rev in plugin.revisions:
            script.get_revision(rev.revision)
    except SyntaxError as exc:
        raise TreeError(f"{exc.filename}:{exc.lineno}: syntax error ({exc.msg}); fix the file",
                        plugin=plugin.name, path=exc.filename) from None
    except CommandError as exc:
        raise TreeError(
            f"plugin {plugin.name!r}: Alembic reads the tree differently ({exc}); keep "
            "`revision = \"...\"` and `down_revision = ...` plain one-line literals",
            plugin=plugin.name) from None
    except Exception as exc:  # a revision module failed to import: user code, any error type
        where = _revision_frame(exc, plugin)
        raise TreeError(f"{where}: importing the revision failed ({type(exc).__name__}: "
                        f"{first_line(exc)}); fix the file", plugin=plugin.name,
                        path=where) from None
    declared = sorted(getattr(plugin, "heads", None) or ([plugin.head] if plugin.head else []))
    if sorted(heads) != declared:
        raise TreeError(
            f"plugin {plugin.name!r}: Alembic finds heads {sorted(heads)}, the files declare "
            f"{declared}; keep `revision` and `down_revision` plain one-line literals",
            plugin=plugin.name)
    return script


def _revision_frame(exc: BaseException, plugin: Plugin) -> str:
    """`file:line` of the innermost frame in the plugin's tree (Alembic imports revisions by
    absolute path; the tree may be named relatively), or the versions directory."""
    # The traceback is for whoever debugs the revision: shown with --log-level debug only.
    get_logger().debug("revision.import_failed", plugin=plugin.name,
                       traceback="".join(traceback.format_exception(exc)))
    tree = plugin.versions_dir.resolve()
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if Path(f.filename).resolve().is_relative_to(tree)]
    if not frames:
        return str(plugin.versions_dir)
    named = plugin.versions_dir / Path(frames[-1].filename).resolve().relative_to(tree)
    return f"{named}:{frames[-1].lineno}"


def alembic_config(plugin: Plugin, safe_url: str) -> Any:
    """The `Config` a revision sees as `context.config`: no file, the plugin's tree as
    `script_location`, the database URL without its password."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(plugin.path).replace("%", "%%"))
    config.set_main_option("sqlalchemy.url", safe_url.replace("%", "%%"))
    return config


def revision_checksum(plugin: Plugin, revision: str) -> str | None:
    rev_file = plugin.revision(revision)
    return None if rev_file is None else rev_file.checksum_to_record


# -- Alembic's order, without importing a revision ---------------------------------------------


def revision_map(plugin: Plugin) -> RevisionMap:
    """Alembic's `RevisionMap` of the tree, built from the revision ids migrator read without
    importing the files, fed in the order `ScriptDirectory` lists them (file names, sorted):
    Alembic's own walk then orders branches and merges exactly as `alembic` does."""
    from alembic.script.revision import Revision, RevisionMap

    def scalar(values: tuple[str, ...]) -> str | tuple[str, ...] | None:
        return values[0] if len(values) == 1 else (values or None)

    revisions = sorted(plugin.revisions, key=lambda r: r.filename)
    return RevisionMap(lambda: [
        Revision(r.revision, scalar(r.down_revisions), dependencies=scalar(r.depends_on),
                 branch_labels=scalar(r.branch_labels)) for r in revisions])


def upgrade_order(plugin: Plugin, current: tuple[str, ...], target: str | None = None
                  ) -> tuple[str, ...]:
    """The revisions `alembic upgrade <target>` (None: heads) applies from `current`, in the
    order it applies them: what `upgrade` runs and `status` lists as pending."""
    return tuple(reversed(_walk(plugin, target or "heads", current, implicit_base=True)))


def history_order(plugin: Plugin) -> tuple[str, ...]:
    """Every revision, newest first, as `alembic history` lists them (`walk_revisions`)."""
    return _walk(plugin, "heads", "base", inclusive=True, assert_relative_length=False)


def _walk(plugin: Plugin, upper: Any, lower: Any, **options: Any) -> tuple[str, ...]:
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    try:
        return tuple(r.revision for r in revision_map(plugin).iterate_revisions(
            upper, lower, **options))
    except KeyError as exc:  # a `depends_on` naming nothing in the tree
        raise TreeError(f"plugin {plugin.name!r}: depends_on names {exc.args[0]!r}, which is "
                        "neither a revision nor a branch label of the tree; fix the revision",
                        plugin=plugin.name) from None
    except (CommandError, RevisionError) as exc:
        raise TreeError(f"plugin {plugin.name!r}: Alembic cannot walk the tree ({exc})",
                        plugin=plugin.name) from None

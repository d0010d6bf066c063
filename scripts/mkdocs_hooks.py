"""MkDocs hooks: the reference pages generated from the code, so they cannot drift from it.

A page that contains `<!-- flchain:cli -->` gets every `flchain` command (from the typer app: usage,
help, options with their defaults); `<!-- flchain:config -->` gets every configuration field (from the
dataclasses in fl_chain/config.py: default and meaning, the meaning being the field's own comment).
A field without a comment fails the build."""

from __future__ import annotations

import dataclasses
import inspect
import io
import json
import tokenize
from typing import Any

import click
import typer.main

CLI_MARK = "<!-- flchain:cli -->"
CONFIG_MARK = "<!-- flchain:config -->"


def _cell(text: Any) -> str:
    """Text fit for one Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _option_rows(command: click.Command) -> list[str]:
    """One table row per option or argument of a command."""
    rows = []
    for param in command.params:
        if param.name == "help":
            continue
        names = ", ".join(f"`{o}`" for o in param.opts + list(getattr(param, "secondary_opts", [])))
        if isinstance(param, click.Argument):
            names = f"`{param.human_readable_name}` (argument)"
        default = "required" if param.required else "" if param.default in (None, "", ()) else param.default
        if isinstance(default, bool):
            default = "on" if default else "off"
        help_text = getattr(param, "help", None) or ""
        rows.append(f"| {names} | {_cell(default)} | {_cell(help_text)} |")
    return rows


def _command_markdown(command: click.Command, path: list[str], level: int) -> list[str]:
    """A command's section, and its subcommands' sections after it."""
    out = [f"{'#' * level} `{' '.join(path)}`", ""]
    help_text = inspect.cleandoc(command.help or "")
    if help_text:
        out += [help_text, ""]
    rows = _option_rows(command)
    if rows and not isinstance(command, click.Group):
        out += ["| option | default | meaning |", "|---|---|---|", *rows, ""]
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            out += _command_markdown(sub, [*path, name], level + 1)
    return out


def cli_reference() -> str:
    """Every flchain command as Markdown, from the typer app itself."""
    from fl_chain.cli import app

    group = typer.main.get_command(app)
    out: list[str] = []
    for name, command in sorted(group.commands.items()):
        out += _command_markdown(command, ["flchain", name], 2)
    return "\n".join(out)


def _field_comments(cls: type) -> dict[str, str]:
    """Each field's trailing comment in the class source (`name: type = default  # meaning`), or the
    comment lines just above it."""
    comments: dict[str, str] = {}
    pending: list[str] = []
    tokens = tokenize.generate_tokens(io.StringIO(inspect.getsource(cls)).readline)
    line_name: str | None = None
    for tok in tokens:
        if tok.type == tokenize.NAME and tok.start[1] == 4 and line_name is None:
            line_name = tok.string
            if pending:
                comments[line_name] = " ".join(pending)
                pending = []
        elif tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            if line_name is not None and tok.start[1] > 4:
                comments[line_name] = text
            else:
                pending.append(text)
        elif tok.type == tokenize.NEWLINE:
            line_name = None
    return comments


def config_reference() -> str:
    """Every section and field of the run configuration with its default and meaning."""
    from fl_chain.config import RunConfig

    out: list[str] = []
    for section in dataclasses.fields(RunConfig):
        cls = section.type if isinstance(section.type, type) else type(section.default_factory())
        comments = _field_comments(cls)
        out += [f"### `[{section.name}]`", "", inspect.cleandoc(cls.__doc__ or ""), ""]
        out += ["| field | default | meaning |", "|---|---|---|"]
        instance = cls()
        for item in dataclasses.fields(cls):
            meaning = comments.get(item.name)
            if not meaning:
                raise ValueError(
                    f"fl_chain/config.py: {cls.__name__}.{item.name}: no comment says what it means"
                )
            default = getattr(instance, item.name)
            shown = f"`{json.dumps(default)}`" if default != "" else "(empty)"  # as TOML writes it
            out.append(f"| `{section.name}.{item.name}` | {_cell(shown)} | {_cell(meaning)} |")
        out.append("")
    return "\n".join(out)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """MkDocs hook: fill the generated references into the pages that ask for them."""
    if CLI_MARK in markdown:
        markdown = markdown.replace(CLI_MARK, cli_reference())
    if CONFIG_MARK in markdown:
        markdown = markdown.replace(CONFIG_MARK, config_reference())
    return markdown

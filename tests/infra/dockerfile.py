"""A small Dockerfile reader for the image tests: instructions per stage, exec-form commands."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Stage:
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for args in self.all("ENV"):
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                values[key] = value
        return values

    def exec_form(self, keyword: str) -> list[str]:
        (args,) = self.all(keyword)
        command = json.loads(args)
        assert isinstance(command, list), f"{keyword} must be exec form (a JSON array)"
        return command

    def healthcheck(self) -> list[str] | None:
        found = self.all("HEALTHCHECK")
        if not found:
            return None
        (args,) = found
        if args.strip() == "NONE":
            return None
        command = json.loads(args[args.index("CMD") + 3 :].strip())
        assert isinstance(command, list)
        return command


def parse(path: Path) -> list[Stage]:
    """The stages of a Dockerfile, each with its (KEYWORD, arguments) instructions."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stages.append(Stage(args.split()[0]))
        else:
            stages[-1].instructions.append((keyword, args.strip()))
    return stages

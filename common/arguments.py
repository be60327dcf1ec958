"""The one list syntax of the command line: an option's list is one comma-separated value.

`--mcu cortex-m4,cortex-m7`, `--model base,trecx_ev`, `--taps a,b`: `comma_list` parses every such value
(docs/usage.md lists the options). `GivenOnce` refuses a list option given twice, and `old_form` names the
new form when words the parser left over are an old space-separated list: both say what to type instead,
never a silently different meaning. Imports nothing heavy, so that any module may parse a list with it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

ALL = "all"  # the word that stands for every item, where an option takes it


def comma_list(text: str, every: Sequence[str] | None = None) -> tuple[str, ...]:
    """The items of an option's comma-separated value, stripped, in order, empty ones dropped:
    "a, b," -> ("a", "b"); "" -> (). With `every`, "all" stands for those items."""
    if every is not None and text.strip() == ALL:
        return tuple(every)
    return tuple(item for item in (part.strip() for part in text.split(",")) if item)


def choice_list(choices: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    """An argparse type: a comma-separated list of some of `choices`, or "all" for every one; an unknown
    item is refused listing the valid ones."""

    def parse(text: str) -> tuple[str, ...]:
        items = comma_list(text, every=choices)
        unknown = [item for item in items if item not in choices]
        if unknown or not items:
            got = f"unknown {unknown[0]!r}" if unknown else "no item"
            raise argparse.ArgumentTypeError(f"{got}; give some of {', '.join(choices)}, comma-separated, or {ALL}")
        return items

    return parse


class GivenOnce(argparse.Action):
    """Stores a list option's value, refusing the option a second time (`--mcu cortex-m4 --mcu cortex-m7`),
    which would otherwise keep only the last list."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        given = f"_{self.dest}_given"  # beside the value: a default equal to a given value stays apart
        if getattr(namespace, given, False):
            parser.error(
                f"{option_string} given twice; give it once, with every item in one comma-separated list: "
                f"{option_string} {getattr(namespace, self.dest)},{values}"
            )
        setattr(namespace, given, True)
        setattr(namespace, self.dest, values)


def old_form(argv: Sequence[str], unknown: Sequence[str], list_options: Sequence[str]) -> str | None:
    """The message for words the parser left over (`unknown`) that follow an option's value in `argv` as an
    old space-separated list: `--mcu cortex-m4 cortex-m7`, or test.sh's `--models trained base trecx_ev`
    (the weights' source, then model names); None for other leftovers, reported as unrecognized.
    `list_options`: the command's options that take a comma-separated list."""
    if not unknown or unknown[0].startswith("-"):
        return None
    for position in range(1, len(argv)):
        if argv[position] != unknown[0]:
            continue
        option, _, value = argv[position - 1].partition("=")  # --mcu=cortex-m4 cortex-m7
        if not value and position >= 2 and not option.startswith("-"):
            option, value = argv[position - 2], argv[position - 1]
        if not option.startswith("--") or not value:
            continue
        words = []  # the left-over words, up to the next option
        for word in argv[position:]:
            if word.startswith("-"):
                break
            words.append(word)
        if option == "--models" and "--model" in list_options:
            names = ",".join(words)
            return (
                f"--models takes only the weights' source, pretrained or trained; name the models with "
                f"--model, one comma-separated list: --models {value} --model {names}"
            )
        if option in list_options:
            return f"{option} takes one comma-separated list, not separate words: {option} {','.join([value, *words])}"
    return None

"""Command-line parsing shared by every command (`llava-hf ...` and `examples/*.py`).

- No abbreviations: argparse would take `--learning_rat` for `--learning_rate`, so a typo silently ran another
  configuration.
- A usage error is one line, `PROG: error: MESSAGE` (an invalid choice lists the choices), exit status 2, without
  the usage block (`--help` prints that).
- One spelling: flags are written with underscores, as HF `TrainingArguments` and accelerate write theirs, and the
  dashed spelling of each is accepted too (`--data_path` / `--data-path`). `--help` lists each flag once, with
  underscores, and says once that dashes work.
"""

import argparse
import copy

from .errors import USAGE_ERROR


DASHES_EPILOG = "Every --flag_name may also be written --flag-name."


def other_spelling(option: str) -> str | None:
    """`--data-path` for `--data_path` and the reverse; None for short options and one-word flags."""
    if not option.startswith("--"):
        return None
    name = option[2:]
    swapped = name.replace("_", "-") if "_" in name else name.replace("-", "_")
    return "--" + swapped if swapped != name else None


class HelpFormatter(argparse.HelpFormatter):
    """Lists a flag by its underscore spelling only: `--max_new_tokens N`, not `..., --max-new-tokens N` as well."""

    def _format_action_invocation(self, action):
        shown = [option for option in action.option_strings
                 if "-" not in option[2:] or other_spelling(option) not in action.option_strings]
        if len(shown) < len(action.option_strings):
            action = copy.copy(action)
            action.option_strings = shown
        return super()._format_action_invocation(action)


class OneLineErrors:
    """Mixin for an `argparse.ArgumentParser`: no abbreviations, one-line usage errors, both flag spellings."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("epilog", DASHES_EPILOG)
        super().__init__(*args, **kwargs)

    def add_argument(self, *names, **kwargs):
        spelled = list(names)
        for name in names:
            alias = other_spelling(name)
            if alias and alias not in spelled and alias not in self._option_string_actions:
                spelled.append(alias)
        return super().add_argument(*spelled, **kwargs)

    def error(self, message):
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


class ArgumentParser(OneLineErrors, argparse.ArgumentParser):
    """The parser of the `llava-hf` commands (subcommand parsers are of the same class)."""

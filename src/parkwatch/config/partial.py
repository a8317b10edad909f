"""What can still be cross-checked in a config that failed validation, so that check-config
reports every problem in one run.

Cross-references (a tenant on a floor that does not exist, a duplicate sensor id) can only be
checked on a validated config, and a field engineer fixing a file should not find a second
round of problems behind the first.  So the list items that hold a validation error (a sensor
with a text threshold, a floor with a negative area) are set aside, what is left is validated
again, and the cross-checks run on that.  Their key paths are put back into the file's
numbering, and a problem naming an item that was set aside ("no floor '2F'" when floor 2F is
the one with the negative area) is dropped: it is a consequence of the first problem, not a
second one.  An error outside any list (a gateway setting, say) leaves nothing to set aside;
the cross-checks then wait for the next run.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from parkwatch.config.yamlsource import Loc

#: a list's path (in the file's numbering) -> the indices of its items that were kept
Kept = dict[Loc, list[int]]


def prune(data: Any, error_locs: list[Loc]) -> tuple[Any, Kept, set[str]] | None:
    """`data` without the list items that hold an error at `error_locs` (data paths), the
    items kept per list, and the ids of the items set aside; None when an error is not in any
    list item."""
    drop: dict[Loc, set[int]] = {}
    for loc in error_locs:
        item = _innermost_item(data, loc)
        if item is None:
            return None
        drop.setdefault(item[:-1], set()).add(int(item[-1]))
    pruned = copy.deepcopy(data)
    kept: Kept = {}
    ids: set[str] = set()
    # the deepest lists first: taking items out of a list leaves its ancestors' numbering alone
    for path in sorted(drop, key=len, reverse=True):
        items = _at(pruned, path)
        if not isinstance(items, list):
            continue
        kept[path] = [i for i in range(len(items)) if i not in drop[path]]
        for i in sorted(drop[path], reverse=True):
            if isinstance(items[i], dict) and "id" in items[i]:
                ids.add(str(items[i]["id"]))
            del items[i]
    return pruned, kept, ids


def cross_check_rest(data: Any, error_locs: list[Loc], validate: Callable[[Any], Any],
                     cross_check: Callable[[Any], list[tuple[Loc, str]]]
                     ) -> list[tuple[Loc, str]]:
    """The cross-check problems of what is valid in `data` (see the module), in the file's
    numbering; none when nothing valid is left to check."""
    got = prune(data, error_locs)
    if got is None:
        return []
    pruned, kept, ids = got
    try:
        cfg = validate(pruned)
    except (ValidationError, ValueError):
        return []
    out = []
    for loc, msg in cross_check(cfg):
        if any(f"'{ident}'" in msg for ident in ids):
            continue  # about an item set aside: a consequence of its own problem
        loc = renumber(loc, kept)
        out.append((loc, _also_at(msg, loc, kept)))
    return out


def _also_at(msg: str, loc: Loc, kept: Kept) -> str:
    """A duplicate's "(also at sensors[N])", N put back into the file's numbering too."""
    head, sep, tail = msg.partition("(also at ")
    name, bracket, rest = tail.partition("[")
    index, close, after = rest.partition("]")
    siblings = loc[:-2]  # the duplicate's own path is (*list, index, "id")
    if not (sep and bracket and close and index.isdigit() and siblings in kept):
        return msg
    numbers = kept[siblings]
    k = int(index)
    return f"{head}{sep}{name}[{numbers[k] if k < len(numbers) else k}]{after}"


def renumber(loc: Loc, kept: Kept) -> Loc:
    """A key path in the pruned data's numbering, in the file's."""
    out: list[str | int] = []
    for part in loc:
        path = tuple(out)
        if isinstance(part, int) and path in kept and part < len(kept[path]):
            out.append(kept[path][part])
        else:
            out.append(part)
    return tuple(out)


def _innermost_item(data: Any, loc: Loc) -> Loc | None:
    """The path of the innermost list item on the way to `loc`, None when there is none."""
    node, found = data, None
    for k, part in enumerate(loc):
        if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            found = tuple(loc[:k + 1])
            node = node[part]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            break
    return found


def _at(data: Any, path: Loc) -> Any:
    node = data
    for part in path:
        held = (part in node) if isinstance(node, dict) else (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node))
        if not held:
            return None
        node = node[part]
    return node

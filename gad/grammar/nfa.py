"""Python regex parse trees → NFAs that keep the priorities of ``re``'s backtracking engine.

Every item is compiled together with the node that follows it (continuation passing), so a node's
successors are listed in the order ``re`` tries them: alternatives left to right, a greedy
repetition's "once more" before its "stop here", a lazy one's the other way round. A leftmost-first
simulation over this NFA (`gad.grammar.determinize`) then finds the match ``re.match`` returns; an
unordered one finds every full match.

Node kinds:

* ``CHAR`` (code-point set) → next;
* ``SPLIT`` [successors in priority order];
* ``LOOP`` (repetition id, body, exit, greedy): a repetition's decision point. ``re``'s
  zero-width protection is kept: an optional iteration that consumed nothing ends the repetition
  (the simulation tracks which repetitions started an iteration within the current closure);
* ``BEHIND`` (tracker, positive) → next: a lookbehind or ``^``/``\\A``, decided by a tracker
  automaton that reads ``⊢`` + the text so far and accepts when its end matches the assertion;
* ``AHEAD`` (obligation, positive) → next: a lookahead or ``$``/``\\Z``, an obligation on the text
  that follows (read with an end marker ``⊣``), resolved as that text is read;
* ``MATCH``.

``\\b`` and ``\\B`` are rewritten into lookbehind/lookahead pairs on ``\\w``. Back references,
conditionals, atomic groups and possessive quantifiers are refused: they are not regular, or not
supported. Inside a lookaround only plain regexes are allowed, plus ``$``/``\\Z`` closing a
lookahead and ``^``/``\\A`` opening a lookbehind.
"""

from __future__ import annotations

import re
from gad.errors import UnsupportedGrammarError
from gad.grammar.charsets import MAX_CP, NEWLINE, SET_FLAGS, Intervals, charset
from gad.grammar.dfa import AutomatonBudget

try:  # Python >= 3.11
    from re import _constants as _c
    from re import _parser as _sre_parse
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _c  # type: ignore[no-redef]
    import sre_parse as _sre_parse  # type: ignore[no-redef]

CHAR, SPLIT, LOOP, BEHIND, AHEAD, MATCH = range(6)

START_MARK = MAX_CP + 1  # ⊢, read by trackers before the text
END_MARK = MAX_CP + 2  # ⊣, read by obligations after the text
WITH_START: Intervals = ((0, START_MARK),)  # every code point, and ⊢


class NFA:
    """Nodes in parallel lists: ``kind``, ``arg`` (see the module docstring) and ``nxt``."""

    __slots__ = ("kind", "arg", "nxt")

    def __init__(self) -> None:
        self.kind: list[int] = []
        self.arg: list[object] = []
        self.nxt: list[int] = []


class Counter:
    """NFA nodes made so far, over a regex and all its lookaround bodies (for the budget)."""

    __slots__ = ("count", "limit", "what", "budget")

    def __init__(self, budget: AutomatonBudget, what: str) -> None:
        self.count = 0
        self.limit = budget.nfa_states
        self.what = what
        self.budget = budget

    def take(self) -> None:
        self.count += 1
        if self.count > self.limit:
            raise self.budget.exceeded(self.what, "nfa_states", self.limit)


class Regex:
    """A compiled regex: the main NFA, its start node, and the NFAs of its lookaround bodies.

    ``lookaheads[k]``: (NFA, start) of the body of obligation k, over the text that follows (which
    ends with ``⊣``); ``lookbehinds[k]``: (NFA, start) of ``(Σ|⊢)*·body`` for tracker k.
    """

    def __init__(
        self, nfa: NFA, start: int, lookaheads: list, lookbehinds: list, positive: dict, names: dict
    ) -> None:
        self.nfa = nfa
        self.start = start
        self.lookaheads: list[tuple[NFA, int]] = lookaheads
        self.lookbehinds: list[tuple[NFA, int]] = lookbehinds
        self.positive = positive
        self.names: dict[tuple[int, int], str] = names  # (AHEAD|BEHIND, index) -> the construct


def parse(pattern: str, flags: int, budget: AutomatonBudget, what: str) -> Regex:
    """Build the prioritised NFA of a validated pattern (``re.compile`` must accept it)."""
    parsed = _sre_parse.parse(pattern, flags)
    builder = _Builder(pattern, Counter(budget, what), body=None)
    root = builder.build(list(parsed), parsed.state.flags, builder.match)
    return Regex(builder.nfa, root, builder.lookaheads, builder.lookbehinds, builder.positive, builder.names)


class _Builder:
    """Builds NFA nodes from ``re``'s parse tree; ``body`` is None for the regex itself, or
    "ahead"/"behind" for a lookaround's body (where assertions are refused)."""

    def __init__(self, pattern: str, counter: Counter, body: str | None) -> None:
        self.pattern = pattern
        self.counter = counter
        self.body = body
        self.nfa = NFA()
        self.reps = 0
        self.lookaheads: list[tuple[NFA, int]] = []
        self.lookbehinds: list[tuple[NFA, int]] = []
        self.positive: dict[tuple[int, int], bool] = {}  # (kind, index) -> positive?
        self.names: dict[tuple[int, int], str] = {}  # (kind, index) -> what the regex wrote
        self._word: dict[int, tuple[int, int]] = {}
        self.match = self.node(MATCH, None, -1)

    def node(self, kind: int, arg: object, nxt: int) -> int:
        self.counter.take()
        nfa = self.nfa
        nfa.kind.append(kind)
        nfa.arg.append(arg)
        nfa.nxt.append(nxt)
        return len(nfa.kind) - 1

    def unsupported(self, what: str) -> UnsupportedGrammarError:
        return UnsupportedGrammarError(f"{what} is not supported in regex {self.pattern!r}")

    # -- sequences and items ------------------------------------------------------------------

    def build(self, seq: list, flags: int, cont: int) -> int:
        """The start node of ``seq`` followed by ``cont`` (built right to left)."""
        items = list(seq)
        last = len(items) - 1
        for i in range(last, -1, -1):
            op, av = items[i]
            cont = self.item(op, av, flags, cont, first=i == 0, last=i == last)
        return cont

    def item(self, op: object, av: object, flags: int, cont: int, *, first: bool, last: bool) -> int:
        if op in (_c.LITERAL, _c.NOT_LITERAL, _c.ANY, _c.IN):
            key = tuple(av) if isinstance(av, list) else av
            return self.node(CHAR, charset(op, key, flags & SET_FLAGS), cont)
        if op is _c.BRANCH:
            return self.node(SPLIT, [self.build(alt, flags, cont) for alt in av[1]], -1)  # type: ignore[index]
        if op is _c.SUBPATTERN:
            _group, add, remove, sub = av  # type: ignore[misc]
            return self.build(list(sub), (flags | add) & ~remove, cont)
        if op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
            lo, hi, sub = av  # type: ignore[misc]
            return self._repeat(list(sub), lo, hi, op is _c.MAX_REPEAT, flags, cont)
        if op is _c.AT:
            return self._anchor(av, flags, cont, first=first, last=last)
        if op in (_c.ASSERT, _c.ASSERT_NOT):
            direction, sub = av  # type: ignore[misc]
            if self.body is not None:
                raise self.unsupported(_describe(op, av) + " inside a lookaround")
            positive = op is _c.ASSERT
            if direction < 0:
                tracker = self._name(BEHIND, self._tracker(list(sub), flags), _describe(op, av))
                return self.node(BEHIND, (tracker, positive), cont)
            obligation = self._name(AHEAD, self._obligation(list(sub), flags, positive), _describe(op, av))
            return self.node(AHEAD, (obligation, positive), cont)
        raise self.unsupported(_describe(op, av))

    def _repeat(self, sub: list, lo: int, hi: int, greedy: bool, flags: int, cont: int) -> int:
        rep = self.reps
        self.reps += 1
        tail = cont
        if hi == _c.MAXREPEAT:
            loop = self.node(LOOP, None, -1)
            self.nfa.arg[loop] = (rep, self.build(sub, flags, loop), cont, greedy)
            tail = loop
        elif hi > lo:
            # Optional copies k = hi-lo ... 1, each a decision point whose body ends at the next.
            after = cont
            for _ in range(hi - lo):
                decision = self.node(LOOP, None, -1)
                self.nfa.arg[decision] = (rep, self.build(sub, flags, after), cont, greedy)
                after = decision
            tail = after
        for _ in range(lo):
            tail = self.build(sub, flags, tail)
        return tail

    # -- assertions -----------------------------------------------------------------------------

    def _anchor(self, av: object, flags: int, cont: int, *, first: bool, last: bool) -> int:
        multiline = bool(flags & re.MULTILINE)
        if av in (_c.AT_BOUNDARY, _c.AT_NON_BOUNDARY):
            if self.body is not None:
                raise self.unsupported(_describe(_c.AT, av) + " inside a lookaround")
            behind, ahead = self._word_assertions(flags)
            self._name(BEHIND, behind, _describe(_c.AT, av))
            for index in ahead.values():
                self._name(AHEAD, index, _describe(_c.AT, av))
            if av is _c.AT_BOUNDARY:  # (?<=\w)(?!\w) | (?<!\w)(?=\w)
                pairs = [(True, False), (False, True)]
            else:  # (?<=\w)(?=\w) | (?<!\w)(?!\w)
                pairs = [(True, True), (False, False)]
            alts = []
            for b, a in pairs:
                after = self.node(AHEAD, (ahead[a], a), cont)
                alts.append(self.node(BEHIND, (behind, b), after))
            return self.node(SPLIT, alts, -1)
        at_start = av is _c.AT_BEGINNING_STRING or (av is _c.AT_BEGINNING and not multiline)
        if self.body == "behind" and first and at_start:
            return self.node(CHAR, ((START_MARK, START_MARK),), cont)
        if self.body == "ahead" and last and av in (_c.AT_END, _c.AT_END_STRING):
            end = self.node(CHAR, ((END_MARK, END_MARK),), cont)
            if av is _c.AT_END_STRING:
                return end
            if multiline:  # before any newline, or at the end
                return self.node(SPLIT, [self.node(CHAR, NEWLINE, cont), end], -1)
            return self.node(SPLIT, [self.node(CHAR, NEWLINE, end), end], -1)
        if self.body is not None:
            raise self.unsupported(_describe(_c.AT, av) + " inside a lookaround")
        name = _describe(_c.AT, av)
        if av in (_c.AT_BEGINNING, _c.AT_BEGINNING_STRING):
            if not at_start:  # multiline ^: after a newline or at the start
                tracker = self._tracker_nfa(_start_or_newline)
            else:
                tracker = self._tracker([(_c.AT, _c.AT_BEGINNING_STRING)], flags)
            return self.node(BEHIND, (self._name(BEHIND, tracker, name), True), cont)
        if av in (_c.AT_END_STRING, _c.AT_END):
            obligation = self._obligation([(_c.AT, av)], flags, True)
            return self.node(AHEAD, (self._name(AHEAD, obligation, name), True), cont)
        raise self.unsupported(_describe(_c.AT, av))  # pragma: no cover - re has no other anchors

    def _name(self, kind: int, index: int, name: str) -> int:
        self.names.setdefault((kind, index), name)
        return index

    def _sub_builder(self, body: str) -> _Builder:
        sub = _Builder(self.pattern, self.counter, body)
        sub.reps = self.reps + 1_000_000  # repetition ids never collide with the main NFA's
        return sub

    def _obligation(self, seq: list, flags: int, positive: bool) -> int:
        sub = self._sub_builder("ahead")
        start = sub.build(seq, flags, sub.match)
        self.lookaheads.append((sub.nfa, start))
        index = len(self.lookaheads) - 1
        self.positive[(AHEAD, index)] = positive
        return index

    def _tracker(self, seq: list, flags: int) -> int:
        sub = self._sub_builder("behind")
        body = sub.build(seq, flags, sub.match)
        loop = sub.node(SPLIT, None, -1)  # (Σ|⊢)* then the body
        sub.nfa.arg[loop] = [sub.node(CHAR, WITH_START, loop), body]
        self.lookbehinds.append((sub.nfa, loop))
        return len(self.lookbehinds) - 1

    def _tracker_nfa(self, make) -> int:
        sub = self._sub_builder("behind")
        start = make(sub)
        self.lookbehinds.append((sub.nfa, start))
        return len(self.lookbehinds) - 1

    def _word_assertions(self, flags: int) -> tuple[int, dict[bool, int]]:
        """Tracker "the previous character is a word character" and the obligations "the next
        one is" (positive and negative), under ``flags``' idea of ``\\w``."""
        key = flags & (re.ASCII | re.IGNORECASE)
        if key not in self._word:
            word = [(_c.IN, [(_c.CATEGORY, _c.CATEGORY_WORD)])]
            self._word[key] = (
                self._tracker(word, flags),
                {True: self._obligation(word, flags, True), False: self._obligation(word, flags, False)},
            )
        behind, ahead = self._word[key]
        return behind, ahead  # type: ignore[return-value]


def _start_or_newline(sub: _Builder) -> int:
    """``(Σ|⊢)*(⊢|\\n)``: the text so far ends at the start or after a newline."""
    end = sub.node(CHAR, ((10, 10), (START_MARK, START_MARK)), sub.match)
    loop = sub.node(SPLIT, None, -1)
    sub.nfa.arg[loop] = [sub.node(CHAR, WITH_START, loop), end]
    return loop


def _describe(op: object, av: object) -> str:
    if op in (_c.ASSERT, _c.ASSERT_NOT):
        kind = "lookbehind" if av[0] < 0 else "lookahead"  # type: ignore[index]
        return f"a {'negative ' if op is _c.ASSERT_NOT else ''}{kind}"
    if op is _c.AT:
        anchors = {_c.AT_BEGINNING: "^", _c.AT_BEGINNING_STRING: "\\A", _c.AT_END: "$", _c.AT_END_STRING: "\\Z"}
        if av in anchors:
            return f"the anchor {anchors[av]}"
        return {_c.AT_BOUNDARY: "the word boundary \\b"}.get(av, "the non-boundary \\B")  # type: ignore[arg-type]
    names = {
        _c.GROUPREF: "a backreference",
        _c.GROUPREF_EXISTS: "a conditional group (?(id)yes|no)",
        getattr(_c, "ATOMIC_GROUP", None): "an atomic group (?>...)",
        getattr(_c, "POSSESSIVE_REPEAT", None): "a possessive quantifier",
    }
    return names.get(op, f"the regex construct {op}")


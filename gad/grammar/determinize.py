"""NFAs of `gad.grammar.nfa` → DFAs over code points → DFAs over UTF-8 bytes.

Two subset constructions share one closure:

* **unordered** (``re.fullmatch``): a DFA state is the set of live threads; it accepts when a
  thread reaches ``MATCH`` (with every lookahead it still owes satisfied by the end of input);
* **leftmost-first** (``re.match``, what lark's lexer takes): a DFA state is the *ordered* list
  of threads, highest priority first, as in a Pike VM; a thread that reaches ``MATCH`` with
  nothing owed cuts every thread below it. A string w is then one of the matches ``re.match``
  can return — ``re.match(p, w)`` spans all of w — exactly when ``MATCH`` is in the list after w.
  (Proof sketch: ``re.match`` returns the highest-priority accepting path over the prefixes of
  its input; the cut removes exactly the paths that rank below an accepting one.)

A thread is (node, obligations): the lookaheads it has passed but whose text is not yet read,
each the state of the lookahead body's DFA. A DFA state also holds, per lookbehind tracker, the
set of states the tracker may be in: one state when the text before is known (the whole input),
all the reachable ones at the start of a lexer terminal, where an assertion whose answer still
depends on that unknown text is refused.

In leftmost-first mode a match may still owe lookaheads when the terminal ends: it then depends on
the text *after* the terminal. Each accepting state gets the language that following text must be
in (its *follow* language), built from the ordered matches still pending: the first one whose
obligations hold decides.
"""

from __future__ import annotations

import bisect
import functools
from collections import defaultdict

from gad.errors import UnsupportedGrammarError
from gad.grammar.charsets import MAX_CP
from gad.grammar.dfa import DEAD, AutomatonBudget, refine
from gad.grammar.nfa import AHEAD, BEHIND, CHAR, END_MARK, LOOP, MATCH, NFA, SPLIT, START_MARK, Regex

MATCH_NOW = -1  # a match ending here
MATCH_OLD = -2  # a match that ended earlier and still owes lookaheads
OK = "ok"


class CharDFA:
    """``segs[state]``: sorted ``(lo, hi, target)`` runs, adjacent runs with one target merged;
    code points in no run go to the dead state. State 0 is initial."""

    __slots__ = ("segs", "accepting", "labels")

    def __init__(self) -> None:
        self.segs: list[list[tuple[int, int, int]]] = []
        self.accepting: set[int] = set()
        self.labels: dict[int, object] = {}

    def step(self, state: int, cp: int) -> int:
        segs = self.segs[state]
        i = bisect.bisect_right(segs, (cp, MAX_CP + 9, 0)) - 1
        if i >= 0 and segs[i][0] <= cp <= segs[i][1]:
            return segs[i][2]
        return DEAD


def append_seg(segs: list[tuple[int, int, int]], lo: int, hi: int, target: int) -> None:
    if segs and segs[-1][2] == target and segs[-1][1] == lo - 1:
        segs[-1] = (segs[-1][0], hi, target)
    else:
        segs.append((lo, hi, target))


def _unordered(nfa: NFA, start: int, budget: AutomatonBudget, what: str) -> CharDFA:
    """Plain subset construction of an assertion-free NFA (full matches; lookaround bodies).

    Without assertions, priorities and zero-width protection do not change the set of full
    matches, so a state is just the set of reachable CHAR/MATCH nodes: each node's ε-closure is
    computed once, and the threads of a state are grouped by their (shared) code-point set, so a
    state's transitions cost its number of distinct sets, not of threads. Work (closure sizes and
    state sizes) is counted against ``budget.work``.
    """
    kind, arg, nxt = nfa.kind, nfa.arg, nfa.nxt
    work = [0]

    @functools.lru_cache(maxsize=None)
    def closure(node: int) -> frozenset[int]:
        seen = {node}
        stack = [node]
        out = []
        while stack:
            n = stack.pop()
            k = kind[n]
            if k == CHAR or k == MATCH:
                out.append(n)
            elif k == SPLIT:
                succ = arg[n]
            else:  # LOOP
                _rep, body, exit_, _greedy = arg[n]  # type: ignore[misc]
                succ = (body, exit_)
            if k == SPLIT or k == LOOP:
                for t in succ:  # type: ignore[union-attr]
                    if t not in seen:
                        seen.add(t)
                        stack.append(t)
        work[0] += len(seen)
        if work[0] > budget.work:
            raise budget.exceeded(what, "work", budget.work)
        return frozenset(out)

    dfa = CharDFA()
    ids: dict[frozenset[int], int] = {}
    queue: list[frozenset[int]] = []

    def state_id(nodes: frozenset[int]) -> int:
        sid = ids.get(nodes)
        if sid is None:
            if len(ids) >= budget.dfa_states:
                raise budget.exceeded(what, "dfa_states", budget.dfa_states)
            work[0] += len(nodes)
            if work[0] > budget.work:
                raise budget.exceeded(what, "work", budget.work)
            sid = ids[nodes] = len(ids)
            queue.append(nodes)
            dfa.segs.append([])
        return sid

    state_id(closure(start))
    i = 0
    while i < len(queue):
        nodes = queue[i]
        sid = i
        i += 1
        groups: dict[int, list[int]] = {}
        for n in nodes:
            if kind[n] == MATCH:
                dfa.accepting.add(sid)
            else:
                groups.setdefault(id(arg[n]), []).append(n)
        sets = []
        events: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for g, members in enumerate(groups.values()):
            sets.append(frozenset().union(*(closure(nxt[n]) for n in members)))
            for lo, hi in arg[members[0]]:  # type: ignore[union-attr]
                events[lo].append((g, 1))
                events[hi + 1].append((g, -1))
        points = sorted(events)
        active: set[int] = set()
        memo: dict[frozenset[int], int] = {}
        segs = dfa.segs[sid]
        for j, p in enumerate(points[:-1]):
            for g, d in events[p]:
                if d > 0:
                    active.add(g)
                else:
                    active.discard(g)
            if not active:
                continue
            key = frozenset(active)
            target = memo.get(key)
            if target is None:
                target = memo[key] = state_id(frozenset().union(*(sets[g] for g in key)))
            append_seg(segs, p, points[j + 1] - 1, target)
    return dfa


def _trim(dfa: CharDFA) -> CharDFA:
    """Map every transition into a state that cannot reach acceptance to DEAD (and drop it)."""
    reverse: dict[int, set[int]] = defaultdict(set)
    for s, segs in enumerate(dfa.segs):
        for _, _, t in segs:
            reverse[t].add(s)
    live = set(dfa.accepting)
    stack = list(live)
    while stack:
        for p in reverse[stack.pop()]:
            if p not in live:
                live.add(p)
                stack.append(p)
    out = CharDFA()
    out.accepting = set(dfa.accepting)
    for s, segs in enumerate(dfa.segs):
        new: list[tuple[int, int, int]] = []
        for lo, hi, t in segs:
            if t in live:
                append_seg(new, lo, hi, t)
        out.segs.append(new if s in live else [])
    return out


def determinize(
    regex: Regex, *, ordered: bool, whole_input: bool, budget: AutomatonBudget, what: str
) -> CharDFA:
    """The code-point DFA of ``regex``: unordered (full matches) or leftmost-first (``re.match``).

    Leftmost-first accepting states carry ``labels[state]``: None when the match does not depend
    on what follows, else the `CharDFA` of the follow language. Raises `UnsupportedGrammarError`
    when an assertion depends on text outside the match that is not available: a lookbehind before
    the start of a lexer terminal, or (unordered, not ``whole_input``) a lookahead past its end.
    """
    if not ordered and not regex.lookaheads and not regex.lookbehinds:
        return _unordered(regex.nfa, regex.start, budget, what)
    obligations = [_trim(_unordered(nfa, s, budget, what)) for nfa, s in regex.lookaheads]
    trackers = [_unordered(nfa, s, budget, what) for nfa, s in regex.lookbehinds]
    positive = [regex.positive[(AHEAD, k)] for k in range(len(obligations))]
    construction = _Construction(regex.nfa, budget, what, ordered=ordered, obligations=obligations,
                                 trackers=trackers, positive=positive, names=regex.names)  # fmt: skip
    initial_trackers = tuple(_tracker_start(t, whole_input) for t in trackers)
    return construction.run(regex.start, initial_trackers, whole_input)


def _tracker_start(tracker: CharDFA, known: bool) -> frozenset[int]:
    """Tracker states after ``⊢`` (the text before is known to be empty), or after ``⊢`` and any
    text (the start of a lexer terminal)."""
    first = tracker.step(0, START_MARK)
    if known:
        return frozenset({first})
    seen = {first}
    stack = [first]
    while stack:
        for lo, hi, t in tracker.segs[stack.pop()]:
            if lo <= MAX_CP and t not in seen:
                seen.add(t)
                stack.append(t)
    return frozenset(seen)


class _Construction:
    def __init__(
        self,
        nfa: NFA,
        budget: AutomatonBudget,
        what: str,
        *,
        ordered: bool,
        obligations: list[CharDFA],
        trackers: list[CharDFA],
        positive: list[bool] | None = None,
        names: dict[tuple[int, int], str] | None = None,
    ) -> None:
        self.names = names or {}
        self.nfa = nfa
        self.budget = budget
        self.what = what
        self.ordered = ordered
        self.obligations = obligations
        self.positive = positive or []
        self.trackers = trackers
        self.work = 0

    # -- obligations ----------------------------------------------------------------------------

    def _status(self, ob: int, q: int) -> int:
        """1: satisfied, -1: failed, 0: pending."""
        dfa = self.obligations[ob]
        if q == DEAD or not dfa.segs[q] and q not in dfa.accepting:
            return 1 if not self.positive[ob] else -1
        if q in dfa.accepting:
            return 1 if self.positive[ob] else -1
        return 0

    def _advance(self, obls: frozenset, cp: int) -> frozenset | None:
        """Obligations after reading ``cp``; None if one of them failed."""
        if not obls:
            return obls
        out = []
        for ob, q in obls:
            q2 = self.obligations[ob].step(q, cp)
            status = self._status(ob, q2)
            if status < 0:
                return None
            if status == 0:
                out.append((ob, q2))
        return frozenset(out)

    def _resolved_at_end(self, obls: frozenset) -> bool:
        return self._advance(obls, END_MARK) == frozenset()

    # -- closure --------------------------------------------------------------------------------

    def _closure(self, seeds: list[tuple[int, frozenset]], trackers: tuple) -> tuple:
        """The threads reachable from ``seeds`` without reading, in priority order (deduplicated,
        first occurrence kept); in ordered mode, cut after the first match that owes nothing."""
        nfa_kind, nfa_arg, nfa_nxt = self.nfa.kind, self.nfa.arg, self.nfa.nxt
        ordered = self.ordered
        out: list[tuple[int, frozenset]] = []
        emitted: set[tuple[int, frozenset]] = set()
        visited: set[tuple[int, frozenset, frozenset]] = set()
        empty: frozenset = frozenset()
        stack = [(node, obls, empty) for node, obls in reversed(seeds)]
        while stack:
            node, obls, entered = stack.pop()
            if node < 0:  # a pending earlier match, carried along in its place
                if (node, obls) not in emitted:
                    emitted.add((node, obls))
                    out.append((node, obls))
                continue
            key = (node, obls, entered)
            if key in visited:
                continue
            visited.add(key)
            self.work += 1
            kind = nfa_kind[node]
            if kind == CHAR:
                if (node, obls) not in emitted:
                    emitted.add((node, obls))
                    out.append((node, obls))
            elif kind == MATCH:
                if (MATCH_NOW, obls) not in emitted:
                    emitted.add((MATCH_NOW, obls))
                    out.append((MATCH_NOW, obls))
                if ordered and not obls:
                    break
            elif kind == SPLIT:
                for succ in reversed(nfa_arg[node]):  # type: ignore[arg-type]
                    stack.append((succ, obls, entered))
            elif kind == LOOP:
                rep, body, exit_, greedy = nfa_arg[node]  # type: ignore[misc]
                if not ordered:  # zero-width protection does not change the full matches
                    stack.append((exit_, obls, entered))
                    stack.append((body, obls, entered))
                elif rep in entered:  # this iteration consumed nothing: the repetition ends
                    stack.append((exit_, obls, entered - {rep}))
                elif greedy:
                    stack.append((exit_, obls, entered))
                    stack.append((body, obls, entered | {rep}))
                else:
                    stack.append((body, obls, entered | {rep}))
                    stack.append((exit_, obls, entered))
            elif kind == BEHIND:
                tracker, positive = nfa_arg[node]  # type: ignore[misc]
                dfa = self.trackers[tracker]
                answers = {q in dfa.accepting for q in trackers[tracker]}
                if len(answers) > 1:
                    name = self.names.get((BEHIND, tracker), "a lookbehind")
                    raise UnsupportedGrammarError(
                        f"{self.what}: {name} that can look past the start of the match is not supported"
                        " (the terminal would depend on the text before it)"
                    )
                if answers.pop() == positive:
                    stack.append((nfa_nxt[node], obls, entered))
            else:  # AHEAD
                ob, _positive = nfa_arg[node]  # type: ignore[misc]
                status = self._status(ob, 0)
                if status > 0:
                    stack.append((nfa_nxt[node], obls, entered))
                elif status == 0:
                    stack.append((nfa_nxt[node], obls | {(ob, 0)}, entered))
        if self.work > self.budget.work:
            raise self.budget.exceeded(self.what, "work", self.budget.work)
        return tuple(out) if ordered else frozenset(out)

    # -- the construction ---------------------------------------------------------------------

    def run(self, start: int, trackers: tuple, whole_input: bool) -> CharDFA:
        dfa = CharDFA()
        ids: dict[tuple, int] = {}
        queue: list[tuple] = []
        nfa_arg, nfa_nxt, nfa_kind = self.nfa.arg, self.nfa.nxt, self.nfa.kind
        limit = self.budget.dfa_states

        def state_id(seeds: tuple, trk: tuple) -> int:
            memo_key = (seeds, trk)
            sid = memo.get(memo_key)
            if sid is not None:
                return sid
            key = (self._closure(list(seeds), trk), trk)
            sid = ids.get(key)
            if sid is None:
                if len(ids) >= limit:
                    raise self.budget.exceeded(self.what, "dfa_states", limit)
                sid = ids[key] = len(ids)
                queue.append(key)
                dfa.segs.append([])
            memo[memo_key] = sid
            return sid

        memo: dict[tuple, int] = {}
        state_id(((start, frozenset()),), trackers)
        i = 0
        while i < len(queue):
            threads, trk = queue[i]
            sid = i
            i += 1
            self._accept(dfa, sid, threads, whole_input)
            # Breakpoints: where any thread's set, obligation or tracker transition changes.
            events: dict[int, list[tuple[int, int]]] = defaultdict(list)
            order = list(threads)
            for t, (node, obls) in enumerate(order):
                if node >= 0:
                    for lo, hi in nfa_arg[node]:  # type: ignore[union-attr]
                        events[lo].append((t, 1))
                        events[hi + 1].append((t, -1))
            points = set(events)
            points.add(0)
            points.add(END_MARK + 1)  # lookaround bodies also read the markers ⊢ and ⊣
            subs = {(ob, q) for _, obls in order for ob, q in obls}
            for ob, q in subs:
                for lo, hi, _ in self.obligations[ob].segs[q]:
                    points.update((lo, hi + 1))
            for k, qs in enumerate(trk):
                for q in qs:
                    for lo, hi, _ in self.trackers[k].segs[q]:
                        points.update((lo, hi + 1))
            sweep = sorted(p for p in points if p <= END_MARK + 1)
            active: dict[int, int] = {}
            segs = dfa.segs[sid]
            for j, p in enumerate(sweep[:-1]):
                for t, d in events.get(p, ()):
                    n = active.get(t, 0) + d
                    if n:
                        active[t] = n
                    else:
                        del active[t]
                seeds = self._step(order, active, p, nfa_nxt, nfa_kind)
                new_trk = tuple(frozenset(self.trackers[k].step(q, p) for q in qs) for k, qs in enumerate(trk))
                if not any(node >= 0 for node, _ in seeds):
                    continue  # only earlier matches are left: nothing can end here any more
                append_seg(segs, p, sweep[j + 1] - 1, state_id(seeds, new_trk))
        return dfa

    def _step(self, order: list, active: dict, cp: int, nfa_nxt: list, nfa_kind: list) -> tuple:
        seeds: list[tuple[int, frozenset]] = []
        for t, (node, obls) in enumerate(order):
            if node < 0:
                if not self.ordered:
                    continue
                obls2 = self._advance(obls, cp)
                if obls2 is None:
                    continue
                if not obls2:  # an earlier match now owes nothing: it wins over all below
                    break
                seeds.append((MATCH_OLD, obls2))
            elif t in active:
                obls2 = self._advance(obls, cp)
                if obls2 is not None:
                    seeds.append((nfa_nxt[node], obls2))
        return tuple(seeds)

    def _accept(self, dfa: CharDFA, sid: int, threads, whole_input: bool) -> None:
        matches = [(node, obls) for node, obls in threads if node < 0]
        if not matches:
            return
        if not self.ordered:
            for _, obls in matches:
                if not obls:
                    dfa.accepting.add(sid)
                    return
            if whole_input:
                if any(self._resolved_at_end(obls) for _, obls in matches):
                    dfa.accepting.add(sid)
                return
            owed = sorted(ob for _, obls in matches for ob, _q in obls)
            name = self.names.get((AHEAD, owed[0]), "a lookahead") if owed else "a lookahead"
            raise UnsupportedGrammarError(
                f"{self.what}: {name} that can look past the end of the match is not supported here (the regex's language would depend on the text after it; use"
                " whole_input=True if the regex is the whole input)"
            )
        if matches[0] == (MATCH_NOW, frozenset()):
            dfa.accepting.add(sid)
            dfa.labels[sid] = None
            return
        follow = self._follow(tuple(matches))
        if follow is not None:
            dfa.accepting.add(sid)
            dfa.labels[sid] = follow

    # -- follow languages -----------------------------------------------------------------------

    def _follow(self, matches: tuple) -> CharDFA | None:
        """The texts that may follow for the first of ``matches`` whose obligations hold to be a
        match ending here (MATCH_NOW); None if no text can. State 0 is initial; an OK state
        absorbs; a state accepts when the verdict at the end of input is yes."""
        dfa = CharDFA()
        ids: dict[object, int] = {}
        queue: list[object] = []

        def state_id(entries: object) -> int:
            sid = ids.get(entries)
            if sid is None:
                if len(ids) >= self.budget.dfa_states:
                    raise self.budget.exceeded(self.what, "dfa_states", self.budget.dfa_states)
                sid = ids[entries] = len(ids)
                queue.append(entries)
                dfa.segs.append([])
            return sid

        state_id(matches)
        i = 0
        while i < len(queue):
            entries = queue[i]
            sid = i
            i += 1
            if entries == OK:
                dfa.accepting.add(sid)
                dfa.segs[sid] = [(0, MAX_CP, sid)]
                continue
            if self._verdict_at_end(entries):  # type: ignore[arg-type]
                dfa.accepting.add(sid)
            points = {0, MAX_CP + 1}
            for _, obls in entries:  # type: ignore[union-attr]
                for ob, q in obls:
                    for lo, hi, _ in self.obligations[ob].segs[q]:
                        points.update((lo, hi + 1))
            sweep = sorted(points)
            segs = dfa.segs[sid]
            for j, p in enumerate(sweep[:-1]):
                nxt = self._decide(entries, p)  # type: ignore[arg-type]
                if nxt is not None:
                    append_seg(segs, p, sweep[j + 1] - 1, state_id(nxt))
        return dfa if _reaches_accepting(dfa) else None

    def _decide(self, entries: tuple, cp: int) -> object | None:
        """The follow state after ``cp``: OK or None once the first entry still standing owes
        nothing (it decides), else the entries still standing (below a satisfied one, none)."""
        out = []
        for kind, obls in entries:
            obls2 = self._advance(obls, cp)
            if obls2 is None:
                continue
            if not obls2 and not out:
                return OK if kind == MATCH_NOW else None
            out.append((kind, obls2))
            if not obls2:
                break
        return tuple(out) if out else None

    def _verdict_at_end(self, entries: tuple) -> bool:
        for kind, obls in entries:
            if self._resolved_at_end(obls):
                return kind == MATCH_NOW
        return False


def _reaches_accepting(dfa: CharDFA) -> bool:
    seen = {0}
    stack = [0]
    while stack:
        s = stack.pop()
        if s in dfa.accepting:
            return True
        for _, _, t in dfa.segs[s]:
            if t not in seen:
                seen.add(t)
                stack.append(t)
    return False


# --------------------------------------------------------------------------------------------
# Minimisation over code points


_SURROGATES = (0xD800, 0xDFFF)


def minimize(cdfa: CharDFA, keys: list[object]) -> CharDFA:
    """The minimal code-point DFA of ``cdfa`` over the code points that have a UTF-8 encoding
    (surrogates and the internal markers are dropped), merging two states only when their
    ``keys`` are equal; state 0 stays initial. Its UTF-8 expansion (`to_bytes`) is then minimal
    too: the encoding is injective, continuation states are shared by content, and no
    continuation state can be equivalent to a code-point state (their first bytes differ).
    ``labels`` of the result map accepting states to their key."""
    segs_all: list[list[tuple[int, int, int]]] = []
    for segs in cdfa.segs:
        new: list[tuple[int, int, int]] = []
        for lo, hi, t in segs:
            for a, b in ((lo, min(hi, _SURROGATES[0] - 1)), (max(lo, _SURROGATES[1] + 1), min(hi, MAX_CP))):
                if a <= b:
                    append_seg(new, a, b, t)
        segs_all.append(new)
    stripped = CharDFA()
    stripped.segs = segs_all
    stripped.accepting = set(cdfa.accepting)
    trimmed = _trim(stripped)
    order = [0]
    index = {0: 0}
    if 0 in _live_states(trimmed):
        for s in order:
            for _, _, t in trimmed.segs[s]:
                if t not in index:
                    index[t] = len(order)
                    order.append(t)
    out = CharDFA()
    if 0 not in _live_states(trimmed):
        out.segs.append([])
        return out
    points = sorted({p for s in order for lo, hi, _ in trimmed.segs[s] for p in (lo, hi + 1)})
    where = {p: i for i, p in enumerate(points)}
    tails: list[int] = []
    labels: list[int] = []
    heads: list[int] = []
    for new_id, s in enumerate(order):
        for lo, hi, t in trimmed.segs[s]:
            target = index[t]
            for k in range(where[lo], where[hi + 1]):
                tails.append(new_id)
                labels.append(k)
                heads.append(target)
    state_keys = [(s in cdfa.accepting, keys[s] if s in cdfa.accepting else None) for s in order]
    block = refine(len(order), tails, labels, heads, state_keys)
    number: dict[int, int] = {}
    for b in block:
        number.setdefault(b, len(number))  # block of state 0 (the initial state) is number 0
    reps: dict[int, int] = {}
    for new_id, b in enumerate(block):
        reps.setdefault(number[b], new_id)
    for q in range(len(number)):
        s = order[reps[q]]
        merged: list[tuple[int, int, int]] = []
        for lo, hi, t in trimmed.segs[s]:
            append_seg(merged, lo, hi, number[block[index[t]]])
        out.segs.append(merged)
        accepting, key = state_keys[reps[q]]
        if accepting:
            out.accepting.add(q)
            out.labels[q] = key
    return out


def _live_states(dfa: CharDFA) -> set[int]:
    return {s for s, segs in enumerate(dfa.segs) if segs or s in dfa.accepting}


# --------------------------------------------------------------------------------------------
# Code-point DFA → byte DFA


def _lead_bytes() -> list[tuple[int, int, int, int, int]]:
    """``(lead byte, first code point, continuation bytes, first continuation lo, hi)``; the
    restricted first-continuation ranges exclude overlongs, surrogates and > U+10FFFF."""
    leads = [(b, (b & 0x1F) << 6, 1, 0x80, 0xBF) for b in range(0xC2, 0xE0)]
    for b in range(0xE0, 0xF0):
        lo, hi = (0xA0, 0xBF) if b == 0xE0 else (0x80, 0x9F) if b == 0xED else (0x80, 0xBF)
        leads.append((b, (b & 0x0F) << 12, 2, lo, hi))
    for b in range(0xF0, 0xF5):
        lo, hi = (0x90, 0xBF) if b == 0xF0 else (0x80, 0x8F) if b == 0xF4 else (0x80, 0xBF)
        leads.append((b, (b & 0x07) << 18, 3, lo, hi))
    return leads


_LEADS = _lead_bytes()


def to_bytes(cdfa: CharDFA, budget: AutomatonBudget, what: str) -> list[tuple[int, ...]]:
    """Byte rows for ``cdfa``: row i < len(cdfa.segs) is code-point state i (same accepting
    states); rows after it are the shared continuation-byte states. Code points above U+10FFFF
    (the internal markers) are ignored. Bounded by ``budget.byte_states``."""
    n = len(cdfa.segs)
    limit = budget.byte_states
    if n > limit:
        raise budget.exceeded(what, "byte_states", limit)
    rows: list[tuple[int, ...]] = [()] * n
    interned: dict[tuple[int, ...], int] = {}

    def intern(row: list[int]) -> int:
        if max(row) < 0:
            return DEAD
        key = tuple(row)
        sid = interned.get(key)
        if sid is None:
            if len(rows) >= limit:
                raise budget.exceeded(what, "byte_states", limit)
            sid = interned[key] = len(rows)
            rows.append(key)
        return sid

    @functools.cache
    def chain(m: int, target: int) -> int:
        """A state that reads ``m`` arbitrary continuation bytes, then is ``target``."""
        if m == 0 or target < 0:
            return target
        return intern([DEAD] * 128 + [chain(m - 1, target)] * 64 + [DEAD] * 64)

    by_map: dict[tuple[tuple[int, int, int], ...], tuple[int, ...]] = {}
    for sid in range(n):
        segs = [s for s in cdfa.segs[sid] if s[0] <= MAX_CP]
        segs = [(lo, min(hi, MAX_CP), t) for lo, hi, t in segs]
        known = by_map.get(tuple(segs))
        if known is not None:  # same code-point map, same byte row
            rows[sid] = known
            continue
        starts = [s[0] for s in segs]

        def uniform(lo: int, hi: int) -> int | None:
            """The one target of every code point in [lo, hi], or None if they differ."""
            i = bisect.bisect_right(starts, lo) - 1
            if i >= 0 and lo <= segs[i][1]:
                return segs[i][2] if hi <= segs[i][1] else None
            return DEAD if i + 1 >= len(segs) or segs[i + 1][0] > hi else None

        def fill(row: list[int], offset: int, lo: int, hi: int) -> None:
            """``row[offset + cp - lo] = target(cp)`` for every code point ``lo <= cp <= hi``."""
            i = max(bisect.bisect_right(starts, lo) - 1, 0)
            while i < len(segs) and segs[i][0] <= hi:
                a, b = max(segs[i][0], lo), min(segs[i][1], hi)
                if a <= b:
                    row[offset + a - lo : offset + b - lo + 1] = [segs[i][2]] * (b - a + 1)
                i += 1

        def block(base: int, m: int) -> int:
            """The state reading ``m`` continuation bytes for code points [base, base + 64**m)."""
            target = uniform(base, base + (1 << (6 * m)) - 1)
            if target is not None:
                return chain(m, target)
            sub = [DEAD] * 256
            if m == 1:
                fill(sub, 0x80, base, base + 63)
            else:
                step = 1 << (6 * (m - 1))
                sub[0x80:0xC0] = [block(base + c * step, m - 1) for c in range(64)]
            return intern(sub)

        row = [DEAD] * 256
        fill(row, 0, 0, 0x7F)
        for lead, base, m, lo, hi in _LEADS:
            if lo == 0x80 and hi == 0xBF:
                row[lead] = block(base, m)
            else:
                step = 1 << (6 * (m - 1))
                sub = [DEAD] * 256
                target = uniform(base + (lo - 0x80) * step, base + (hi - 0x7F) * step - 1)
                if target is not None:  # one target for the whole restricted range
                    sub[lo : hi + 1] = [chain(m - 1, target)] * (hi - lo + 1)
                else:
                    for c in range(lo, hi + 1):
                        sub[c] = block(base + (c - 0x80) * step, m - 1)
                row[lead] = intern(sub)
        rows[sid] = by_map[tuple(segs)] = tuple(row)
    return rows

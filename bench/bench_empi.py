"""EMPI matching quality and speed on a synthetic population (issue 9).

    .venv/bin/python -m bench.bench_empi                 # 10,000 and 100,000 citizens
    .venv/bin/python -m bench.bench_empi --n 100000 --sweep

How the figures are obtained:

1. ``ehr.empi.synth.generate(n, seed)`` makes ``n`` citizens, one *primary* record each, a
   *duplicate* record at another hospital for ~10 % of them (typos, swapped names, pinyin, new
   phone, new address, no citizen ID ... see ``ehr/empi/synth.py``), and 2 % *newcomers*: twins,
   namesakes and relatives of indexed citizens, who have no record yet.
2. Every primary record is indexed (``BlockingIndex``). That build is timed but not counted.
3. Each duplicate and each newcomer is then one registration: feature extraction + blocking +
   scoring every candidate + grading, timed with ``perf_counter_ns`` on one thread, one
   registration at a time (p50/p95/p99 over all registrations).
4. Pairs are graded by ``score``, then per registration as ``resolve`` does (two or more
   ``probable`` candidates: all go to review). A pair graded ``certain``/``probable`` is an
   *auto-link*; ``possible`` a *review* task.
   True pairs are (duplicate, its citizen's primary record); every other graded pair is false.
   - auto-link precision = true auto-links / auto-links (pairs);
   - auto-link recall = duplicates auto-linked to their primary / duplicates;
   - review: tasks created, and how many are true; recall (auto + review) = duplicates whose
     primary was auto-linked or put up for review / duplicates;
   - blocking recall = duplicates whose primary was among the candidates.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

from bench._common import machine
from ehr.empi.blocking import BlockingIndex
from ehr.empi.features import PatientFeatures, extract
from ehr.empi.scoring import DEFAULT_CONFIG, MatchConfig, score
from ehr.empi.synth import Population, generate

#: the lowest threshold the sweep tries; pairs scoring less are not kept
SWEEP_FLOOR = 6.0


@dataclass(slots=True)
class Pair:
    query: int  # index into the registrations
    true: bool
    rule_grade: str | None
    total: float
    name_ok: bool

    def grade(self, cfg: MatchConfig) -> str:
        if self.rule_grade is not None:
            return self.rule_grade
        if self.total >= cfg.upper and self.name_ok:
            return "probable"
        return "possible" if self.total >= cfg.lower else "certainly-not"


@dataclass
class Run:
    n: int
    pop: Population
    pairs: list[Pair]
    times_ms: list[float]
    candidates: list[int]
    in_block: int
    duplicates: int
    newcomers: int
    build_s: float
    regs: list[tuple[str, tuple[str, ...], str | None]]  # kind, distortions, hard-negative kind


def run(n: int, seed: int, cfg: MatchConfig, max_block: int) -> Run:
    t0 = time.perf_counter()
    pop = generate(n, seed=seed)
    gen_s = time.perf_counter() - t0
    primary_of: dict[int, str] = {}
    index = BlockingIndex(max_block=max_block)
    feats: dict[str, PatientFeatures] = {}
    t0 = time.perf_counter()
    for r in pop.records:
        if r.kind == "primary":
            f = extract(r.patient)
            feats[r.rid] = f
            index.add(r.rid, f)
            primary_of[r.citizen] = r.rid
    build_s = time.perf_counter() - t0
    print(
        f"  generated {len(pop.records):,} records in {gen_s:.1f} s; indexed {len(index):,} "
        f"primaries in {build_s:.1f} s",
        flush=True,
    )
    hard = {c.cid: c.hard_negative for c in pop.citizens}
    pairs: list[Pair] = []
    times: list[float] = []
    cand_counts: list[int] = []
    regs: list[tuple[str, tuple[str, ...], str | None]] = []
    in_block = dups = newcomers = 0
    ok_levels = cfg.auto_link_name_levels
    for r in pop.records:
        if r.kind == "primary":
            continue
        q = len(regs)
        regs.append((r.kind, r.distortions, hard.get(r.citizen)))
        truth = primary_of.get(r.citizen) if r.kind == "duplicate" else None
        t = time.perf_counter_ns()
        f = extract(r.patient)
        cands = index.candidates(f)
        scored = [(rid, score(f, feats[rid], cfg, index)) for rid in cands]
        times.append((time.perf_counter_ns() - t) / 1e6)
        cand_counts.append(len(cands))
        if r.kind == "duplicate":
            dups += 1
            in_block += truth in cands
        else:
            newcomers += 1
        for rid, s in scored:
            name = next((fs.level for fs in s.fields if fs.field == "name"), None)
            is_true = rid == truth
            if not is_true and s.rule is None and s.total < SWEEP_FLOOR:
                continue  # below any threshold the sweep tries: not kept
            pairs.append(Pair(q, is_true, s.grade if s.rule else None, s.total, name in ok_levels))
    return Run(n, pop, pairs, times, cand_counts, in_block, dups, newcomers, build_s, regs)


def graded(r: Run, cfg: MatchConfig) -> list[tuple[Pair, str]]:
    """Pair grades at ``cfg``, then per registration as ``ehr.empi.scoring.resolve`` does:
    two or more ``probable`` candidates all go to review."""
    out: list[tuple[Pair, str]] = []
    by_query: dict[int, list[tuple[Pair, str]]] = defaultdict(list)
    for p in r.pairs:
        by_query[p.query].append((p, p.grade(cfg)))
    for items in by_query.values():
        if sum(g == "probable" for _, g in items) > 1:
            items = [(p, "possible" if g == "probable" else g) for p, g in items]
        out.extend(items)
    return out


def metrics(r: Run, cfg: MatchConfig) -> dict[str, float]:
    auto_true = auto_false = review_true = review_false = 0
    found_auto: set[int] = set()
    found_review: set[int] = set()
    for p, g in graded(r, cfg):
        if g in ("certain", "probable"):
            if p.true:
                auto_true += 1
                found_auto.add(p.query)
            else:
                auto_false += 1
        elif g == "possible":
            if p.true:
                review_true += 1
                found_review.add(p.query)
            else:
                review_false += 1
    return {
        "auto_precision": auto_true / max(1, auto_true + auto_false),
        "auto_recall": len(found_auto) / max(1, r.duplicates),
        "auto_true": auto_true,
        "auto_false": auto_false,
        "review_true": review_true,
        "review_false": review_false,
        "recall_any": len(found_auto | found_review) / max(1, r.duplicates),
        "precision_any": (auto_true + review_true)
        / max(1, auto_true + auto_false + review_true + review_false),
    }


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def report(r: Run, cfg: MatchConfig) -> None:
    m = metrics(r, cfg)
    print(
        f"\n== {r.n:,} citizens: {r.duplicates:,} duplicate registrations, "
        f"{r.newcomers:,} newcomers (twins/namesakes/relatives); thresholds "
        f"upper={cfg.upper} lower={cfg.lower} bits"
    )
    print(
        f"  blocking recall        {r.in_block / max(1, r.duplicates):.4f}  "
        f"(candidates per registration: mean {statistics.mean(r.candidates):.1f}, "
        f"p95 {pct([float(c) for c in r.candidates], 0.95):.0f}, max {max(r.candidates)})"
    )
    print(
        f"  auto-link precision    {m['auto_precision']:.4f}  "
        f"({m['auto_true']:,} true, {m['auto_false']:,} false pairs)"
    )
    print(f"  auto-link recall       {m['auto_recall']:.4f}")
    print(
        f"  review tasks           {m['review_true'] + m['review_false']:,} "
        f"({m['review_true']:,} true, {m['review_false']:,} false)"
    )
    print(
        f"  recall auto+review     {m['recall_any']:.4f}   precision auto+review "
        f"{m['precision_any']:.4f}"
    )
    print(
        f"  match time per registration (ms, 1 thread, n={len(r.times_ms):,}): "
        f"p50 {pct(r.times_ms, 0.5):.2f}  p95 {pct(r.times_ms, 0.95):.2f}  "
        f"p99 {pct(r.times_ms, 0.99):.2f}  max {max(r.times_ms):.2f}"
    )
    # where recall is lost, and where false links come from
    by_dist: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    grades = graded(r, cfg)
    auto_q = {p.query for p, g in grades if p.true and g in ("certain", "probable")}
    any_q = auto_q | {p.query for p, g in grades if p.true and g == "possible"}
    for q, (kind, dist, _) in enumerate(r.regs):
        if kind != "duplicate":
            continue
        for d in dist:
            by_dist[d][0] += 1
            by_dist[d][1] += q in auto_q
            by_dist[d][2] += q in any_q
    print("  recall by distortion (auto / auto+review):")
    for d, (tot, a, any_) in sorted(by_dist.items()):
        print(f"    {d:<14} {tot:>6,}  {a / tot:.3f} / {any_ / tot:.3f}")
    fp: Counter[tuple[str, str]] = Counter()
    for p, g in grades:
        if not p.true and g in ("certain", "probable", "possible"):
            kind, _, hard = r.regs[p.query]
            fp[(g, f"{kind}{'/' + hard if hard else ''}")] += 1
    if fp:
        print("  false pairs by grade and registration kind:", dict(sorted(fp.items())))


def sweep(r: Run, base: MatchConfig) -> None:
    print(
        f"\n  threshold sweep ({r.n:,}):  upper  auto-P   auto-R | lower  review(true/false)  R(any)"
    )
    for upper in (18, 20, 21, 22, 23, 24, 25, 26, 28, 30):
        cfg = MatchConfig(upper=upper, lower=min(base.lower, upper))
        m = metrics(r, cfg)
        print(f"    {upper:>5}  {m['auto_precision']:.4f}  {m['auto_recall']:.4f}")
    for lower in (6, 8, 10, 11, 12, 13, 14, 16):
        cfg = MatchConfig(upper=max(base.upper, lower), lower=lower)
        m = metrics(r, cfg)
        print(
            f"    {'':>5}  {'':>6}  {'':>6} | {lower:>5}  {m['review_true']:>6,}/{m['review_false']:<7,}  "
            f"{m['recall_any']:.4f}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--seed", type=int, default=20250101)
    ap.add_argument("--upper", type=float, default=DEFAULT_CONFIG.upper)
    ap.add_argument("--lower", type=float, default=DEFAULT_CONFIG.lower)
    ap.add_argument("--max-block", type=int, default=BlockingIndex().max_block)
    ap.add_argument("--sweep", action="store_true", help="print precision/recall per threshold")
    args = ap.parse_args(argv)
    cfg = MatchConfig(upper=args.upper, lower=args.lower)
    print(__doc__)
    print(f"{machine()}; seed {args.seed}, max_block {args.max_block}")
    for n in args.n:
        print(f"\n-- {n:,} citizens", flush=True)
        r = run(n, args.seed, cfg, args.max_block)
        report(r, cfg)
        if args.sweep:
            sweep(r, cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The digest map: a similarity graph laid out at build time, and articles per year. Pure and seeded.

At most `MAX_NODES` articles are drawn (the best connected), so the map stays light and readable
at 10,000 articles; the page says how many are shown.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import operator
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:  # numpy is imported by the functions that lay out the map
    import numpy as np

from generator.link import Digest, link_target
from generator.load import replaced_positions

MAX_NODES = 300
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
OTHER_COLOUR = "#8a8f98"
SIZE = 800.0  # the SVG viewBox is SIZE x SIZE


@dataclass(frozen=True)
class MapNode:
    id: str
    title: str
    x: float
    y: float
    colour: str
    topic: str


@dataclass(frozen=True)
class DigestMap:
    nodes: tuple[MapNode, ...]
    edges: tuple[tuple[float, float, float, float], ...]
    legend: tuple[tuple[str, str], ...]  # (topic, colour)
    total: int
    years: tuple[tuple[str, int], ...]  # (year, count), oldest first


def primary_topics(digest: Digest, ids: Iterable[str] | None = None) -> dict[str, str]:
    """Return the main topic of each article of `ids` (default: every article): its major MeSH
    descriptor (else its first keyword) most common in the digest."""
    global _TOPIC_COUNTS
    articles = digest.articles
    last = _TOPIC_COUNTS
    if last is not None and len(last.articles) == len(articles):
        counts, candidates = last.counts, last.candidates
        for position in replaced_positions(articles, last.articles):  # a rebuild's few new articles
            counts.subtract(candidates[position][1])
            candidates[position] = _candidates(articles[position])
            counts.update(candidates[position][1])
    else:
        candidates = list(map(_candidates, articles))
        counts = Counter(itertools.chain.from_iterable(found for _, found in candidates))
    _TOPIC_COUNTS = _TopicCounts(articles, candidates, counts)
    by_id = digest.by_id
    chosen = ((i, _candidates(by_id[i])[0]) for i in ids) if ids is not None else \
        ((a.id, found) for a, (found, _) in zip(articles, candidates))
    return {i: min(found, key=lambda t: (-counts[t], t)) if found else "" for i, found in chosen}


def _candidates(article) -> tuple[list[str], set[str]]:
    found = [m.descriptor for m in article.mesh_terms if m.is_major_topic] or list(article.keywords[:1])
    return found, set(found)


@dataclass
class _TopicCounts:
    """The last call's articles, each one's candidate topics (a list, and a set as counted) and how
    many articles have each topic among them: `digest serve` and the daemon rebuild with most
    articles the very objects they were (a subject count of 10,000 articles: 0.02 s)."""

    articles: tuple
    candidates: list[tuple[list[str], set[str]]]
    counts: Counter


_TOPIC_COUNTS: _TopicCounts | None = None


def _seeded_positions(ids: list[str]) -> np.ndarray:
    import numpy as np

    values = [hashlib.sha256(i.encode()).digest() for i in ids]
    return np.array([[v[0] / 255.0 - 0.5, v[1] / 255.0 - 0.5] for v in values], dtype=float)


_LAYOUTS: dict[tuple, np.ndarray] = {}  # graph -> positions, so `digest serve` rebuilds skip the layout


def layout(ids: list[str], edges: list[tuple[int, int]], iterations: int = 120) -> np.ndarray:
    """Return Fruchterman-Reingold positions in [0, 1]^2, deterministic for the same graph."""
    key = (tuple(ids), tuple(edges), iterations)
    if key not in _LAYOUTS:
        _LAYOUTS.clear()
        _LAYOUTS[key] = _layout(ids, edges, iterations)
    return _LAYOUTS[key].copy()


def layout_key(ids: list[str], edges: list[tuple[int, int]]) -> str:
    """Return the fragment cache's key of the layout of this graph."""
    return "layout:" + hashlib.blake2b(repr((ids, edges)).encode(), digest_size=16).hexdigest()


def cached_layout(ids: list[str], edges: list[tuple[int, int]], cache: dict[str, str] | None) -> np.ndarray:
    """Return the layout, reusing one stored in `cache` (the build's fragment cache) for the same graph."""
    import numpy as np

    if cache is None:
        return layout(ids, edges)
    key = layout_key(ids, edges)
    if key in cache:
        return np.array(json.loads(cache[key]), dtype=float).reshape(-1, 2)
    positions = layout(ids, edges)
    cache[key] = json.dumps([round(float(v), 6) for v in positions.ravel()])
    return np.array(json.loads(cache[key]), dtype=float).reshape(-1, 2)  # the same rounding either way


def _layout(ids: list[str], edges: list[tuple[int, int]], iterations: int) -> np.ndarray:
    import numpy as np

    n = len(ids)
    if n == 0:
        return np.zeros((0, 2))
    if n == 1:
        return np.array([[0.5, 0.5]])
    pos = _seeded_positions(ids)
    k = 1.0 / np.sqrt(n)
    attraction = np.zeros((n, n))
    for a, b in edges:
        attraction[a, b] = attraction[b, a] = 1.0 / k
    repulsion = k * k
    temperature = 0.1
    # Coordinates as two vectors and n x n matrices, not an n x n x 2 array: 5x faster (0.12 s
    # instead of 0.65 s for the 300 nodes of a large digest), which a save in `digest serve` waits for.
    x, y = pos[:, 0].copy(), pos[:, 1].copy()
    for _ in range(iterations):
        dx = x[:, None] - x[None, :]
        dy = y[:, None] - y[None, :]
        distance = np.sqrt(dx * dx + dy * dy) + 1e-9
        force = repulsion / (distance * distance) - attraction * distance
        move_x = (dx * force).sum(1) - x * (2.0 * k)  # gravity: isolated nodes stay near the centre
        move_y = (dy * force).sum(1) - y * (2.0 * k)
        length = np.sqrt(move_x * move_x + move_y * move_y) + 1e-9
        step = np.minimum(length, temperature) / length
        x += move_x * step
        y += move_y * step
        temperature *= 0.97
    pos = np.stack([x, y], 1)
    low, high = pos.min(0), pos.max(0)
    return (pos - low) / np.where(high - low > 0, high - low, 1.0)


def map_graph(digest: Digest) -> tuple[list[str], list[tuple[int, int]]]:
    """Return the articles the map draws (the best connected, by id) and the lines between them.

    Asked twice a build (the plan fingerprints it, the map page draws it) and again by every
    rebuild of `digest serve` and the daemon: the answer is kept while the articles and their
    similar-list entries (`link.SimilarLists`) are the same objects (the linker hands back the
    same entry for an article whose neighbours did not change). A process's first answer is made
    from all the lists at once; a session (serve, the daemon) then keeps the lines and each
    article's count of them (`count_lines`), so that an edit recounts the lines of the lists it
    changed (0.035 s a rebuild at 10,000 articles otherwise). Keeping them costs more than the
    first answer (0.1 s against 0.02 s at 10,000 articles): a single `digest build` does not."""
    global _GRAPH
    ids = list(digest.by_id)  # the articles' ids in their order, without reading 10,000 articles
    lists = list(map(digest.similar.entries.get, ids, itertools.repeat(())))
    graph = _GRAPH
    if graph is None or graph.ids != ids:
        counted = graph is not None and graph.counted  # (a session goes on counting)
        graph = _GRAPH = _Graph(ids)
        graph.counted = counted
    else:
        answered = graph.lists if graph.counted else graph.first_lists
        if len(answered) == len(lists) and all(map(operator.is_, answered, lists)):
            return graph.result[0][:], graph.result[1][:]
    if graph.counted:
        graph.take(lists)
        degree = graph.degree
        neighbours = graph.neighbours
        chosen = _best_connected(degree)
        index = {article_id: n for n, article_id in enumerate(chosen)}
        edges = sorted((n, index[other]) for n, article_id in enumerate(chosen)
                       for other in neighbours.get(article_id, ()) if article_id < other and other in index)
    else:
        lines = _lines_of(ids, lists)
        ends = Counter(itertools.chain.from_iterable(lines))
        degree = {article_id: ends[article_id] for article_id in ids}
        chosen = _best_connected(degree)
        index = {article_id: n for n, article_id in enumerate(chosen)}
        edges = sorted((index[a], index[b]) for a, b in lines if a in index and b in index)
        graph.first_lists = lists
    graph.result = (chosen, edges)
    return chosen[:], edges[:]


def count_lines() -> None:
    """Keep the lines of the last `map_graph` answer and each article's count of them, which a
    session's next answers update (see there)."""
    graph = _GRAPH
    if graph is not None and not graph.counted:
        graph.take(graph.first_lists)
        graph.counted, graph.first_lists = True, []


def _best_connected(degree: dict[str, int]) -> list[str]:
    """The MAX_NODES articles with the most lines (then by id), by id."""
    return sorted(article_id for _, article_id in heapq.nsmallest(MAX_NODES, zip(map(operator.neg, degree.values()),
                                                                                degree)))


def _lines_of(ids: list[str], lists: list[tuple]) -> set[tuple[str, str]]:
    """Return the lines of the similarity graph: each pair of articles one's list links to the
    other's, from either side, as (lower id, higher id)."""
    lines: set[tuple[str, str]] = set()
    add = lines.add
    for article_id, links in zip(ids, lists):
        for link in links:
            target = link_target(link)
            if target and target != article_id:
                add((article_id, target) if article_id < target else (target, article_id))
    return lines


class _Graph:
    """The lines of the similarity graph (an undirected pair of articles for each link into the
    digest, from either side) as the last `map_graph` call counted them."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        self.lists: list[tuple] = [()] * len(ids)  # each article's similar-list entry, as counted
        self.lines: list[tuple[tuple[str, str], ...]] = [()] * len(ids)  # the lines each list adds
        self.twice: dict[tuple[str, str], int] = {}  # line -> how many lists add it (1 or 2)
        self.neighbours: dict[str, set[str]] = {}
        self.degree = dict.fromkeys(ids, 0)
        self.result: tuple[list[str], list[tuple[int, int]]] = ([], [])
        self.counted = False  # whether the lines above are kept (see `count_lines`)
        self.first_lists: list[tuple] = []  # the lists of the last answer made from all of them

    def take(self, lists: list[tuple]) -> None:
        """Count the lines of the lists that are not the ones counted last."""
        twice, neighbours, degree = self.twice, self.neighbours, self.degree
        for position, (links, counted) in enumerate(zip(lists, self.lists)):
            if links is counted:
                continue
            article_id = self.ids[position]
            targets = [link_target(link) for link in links]
            lines = tuple((article_id, target) if article_id < target else (target, article_id)
                          for target in targets if target and target != article_id)
            for line in self.lines[position]:
                if twice[line] == 2:
                    twice[line] = 1
                    continue
                del twice[line]
                a, b = line
                neighbours[a].discard(b)
                neighbours[b].discard(a)
                for end in line:
                    if end in degree:
                        degree[end] -= 1
            for line in dict.fromkeys(lines):
                if line in twice:
                    twice[line] = 2
                    continue
                twice[line] = 1
                a, b = line
                neighbours.setdefault(a, set()).add(b)
                neighbours.setdefault(b, set()).add(a)
                for end in line:
                    if end in degree:
                        degree[end] += 1
            self.lists[position], self.lines[position] = links, tuple(dict.fromkeys(lines))


_GRAPH: _Graph | None = None


def forget_digest_memos() -> None:
    """Forget the last digest's graph and topic counts (see `render.forget_digest_memos`)."""
    global _GRAPH, _TOPIC_COUNTS
    _GRAPH = _TOPIC_COUNTS = None


_YEARS_SHOWN = 200  # a chart spanning more years (a mistyped date) shows only those with articles


def articles_per_year(digest: Digest) -> tuple[tuple[str, int], ...]:
    """Return (year, articles) for every year from the oldest to the newest, those without articles
    as 0 (a chart's axis is time: 2019 next to 2021 would hide a year). Counts are the year pages'
    when the digest has them (an article's year page is its year's), without reading 10,000 dates
    again."""
    years = digest.taxonomies.get("years")
    if years is not None:
        counts = {term.name: len(term.article_ids) for term in years}
    else:
        counts = {str(year): count for year, count in Counter(a.year for a in digest.articles).items() if year}
    numbers = sorted(int(name) for name in counts)  # names are str(article.year)
    if not numbers or numbers[-1] - numbers[0] >= _YEARS_SHOWN:
        return tuple((str(year), counts[str(year)]) for year in numbers)
    return tuple((str(year), counts.get(str(year), 0)) for year in range(numbers[0], numbers[-1] + 1))


def build_map(digest: Digest, layout_cache: dict[str, str] | None = None) -> DigestMap:
    """Choose the nodes, lay them out, colour them by topic, count articles per year."""
    chosen, edges = map_graph(digest)
    positions = cached_layout(chosen, edges, layout_cache) * (SIZE - 40) + 20
    topics = primary_topics(digest, chosen)
    topic_counts = Counter(topics[i] for i in chosen if topics[i])
    legend_topics = [t for t, _ in sorted(topic_counts.items(), key=lambda kv: (-kv[1], kv[0]))[: len(PALETTE)]]
    colours = dict(zip(legend_topics, PALETTE))
    nodes = tuple(
        MapNode(id=i, title=digest.by_id[i].title, x=round(float(positions[n][0]), 1),
                y=round(float(positions[n][1]), 1), colour=colours.get(topics[i], OTHER_COLOUR),
                topic=topics[i] if topics[i] in colours else "Other")
        for n, i in enumerate(chosen)
    )
    lines = tuple((nodes[a].x, nodes[a].y, nodes[b].x, nodes[b].y) for a, b in edges)
    legend = tuple((t, colours[t]) for t in legend_topics)
    if any(node.topic == "Other" for node in nodes):
        legend += (("Other", OTHER_COLOUR),)
    return DigestMap(nodes=nodes, edges=lines, legend=legend, total=len(digest.articles),
                     years=articles_per_year(digest))

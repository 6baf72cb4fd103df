from collections import deque

import numpy as np
import pytest

from selfimprove.tasks import get_task

hops, nodes = get_task("maze_hops"), get_task("maze_nodes")


def parse(prompt):
    """prompt -> (start, end, adjacency {label: [labels]})."""
    ends, lists = prompt.removesuffix("=").split("#")
    start, end = ends.split(">")
    adjacency = {}
    for entry in lists.split("-"):
        node, neighbours = entry.split(":")
        assert node not in adjacency
        adjacency[node] = neighbours.split(",")
    return start, end, adjacency


def bfs_path(adjacency, start, end):
    came = {start: None}
    queue = deque([start])
    while queue:
        u = queue.popleft()
        for v in adjacency[u]:
            if v not in came:
                came[v] = u
                queue.append(v)
    path = [end]
    while path[-1] != start:
        path.append(came[path[-1]])
    return path[::-1], len(came)


@pytest.mark.parametrize(("task", "difficulty", "n", "h"),
                         [(hops, (1,), 30, 1), (hops, (9,), 30, 9), (hops, (29,), 30, 29),
                          (nodes, (10,), 10, 9), (nodes, (33,), 33, 9)])
def test_maze_is_a_spanning_tree_and_the_truth_is_the_path_of_h_hops(task, difficulty, n, h):
    b = task.sample(difficulty, range(200), seed=1)
    for prompt, truth in zip(b.prompts, b.truths):
        start, end, adjacency = parse(prompt)
        assert len(adjacency) == n and all(1 <= int(u) <= 99 and len(u) == 2 for u in adjacency)
        edges = {frozenset((u, v)) for u, vs in adjacency.items() for v in vs}
        assert all(u in adjacency[v] for u, vs in adjacency.items() for v in vs)  # listed both ways
        path, reached = bfs_path(adjacency, start, end)
        assert len(edges) == n - 1 and reached == n  # connected with n - 1 edges: a spanning tree
        assert truth == ">".join(path) and len(path) == h + 1
        assert len(prompt) == 9 * n and len(truth) == 3 * h + 2  # one length per difficulty
        assert task.verify(prompt, truth)


def test_maze_verifier_needs_no_truth():
    b = hops.sample((5,), range(50), seed=2)
    for prompt, truth in zip(b.prompts, b.truths):
        path = truth.split(">")
        _, _, adjacency = parse(prompt)
        outside = next(v for v in adjacency if v not in path)
        stranger = next(v for v in adjacency if v not in path and v not in adjacency[path[1]])
        wrong = [
            ">".join(path[:-1]),  # stops short of the end
            ">".join(path[1:]),  # does not start at the start
            ">".join(path[:2] + [stranger] + path[3:]),  # a step along no edge
            ">".join(path[:2] + path[:2] + path[2:]),  # back and forth along edges: repeated nodes
            ">".join(path[:-1] + [outside]),  # wrong end
            truth[:-1] + str((int(truth[-1]) + 1) % 10),  # a corrupted digit
            truth.replace(">", ">>", 1), "", ">", truth + ">",  # malformed
        ]
        assert all(hops.verify(prompt, w) is False for w in wrong)
        assert hops.verify(prompt, truth) is True


def test_maze_difficulties():
    assert nodes.base_difficulties(30) == [(n,) for n in range(10, 31)]
    assert nodes.next_difficulties(nodes.base_difficulties(30), step=3) == [(33,)]  # the paper's step
    assert hops.next_difficulties(hops.base_difficulties(9)) == [(10,)]
    assert max(hops.audit_difficulties([(28,)], 2, 4)) == (29,)
    assert min(nodes.audit_difficulties([(12,)], 5, 1)) == (10,)
    with pytest.raises(ValueError, match="hops < nodes"):
        hops.sample((30,), range(2), seed=0)
    with pytest.raises(ValueError, match="base must exceed"):
        nodes.base_difficulties(9)


def test_maze_prompts_hide_the_path_order():
    """Labels and list order are random: the start is not always listed first, nor labelled low."""
    b = hops.sample((4,), range(300), seed=0)
    firsts = [p.split("#")[1][:2] == p[:2] for p in b.prompts]
    assert 0 < np.mean(firsts) < 0.2
    assert len({p[:2] for p in b.prompts}) > 80


def test_ten_thousand_mazes_in_one_call_are_all_different():
    b = hops.sample((9,), np.arange(10_000), seed=0)
    assert len(set(b.prompts)) == 10_000


def test_task_nodes_sets_the_tree_size_of_maze_hops_and_reaches_the_workers():
    from selfimprove.committee import Member
    from selfimprove.config import Config, load_config

    cfg = load_config("cpu-maze-hops", ["task.nodes=10", "model.n_layer=1", "model.d_model=16", "model.d_ff=16"])
    in_worker = Config.model_validate_json(cfg.model_dump_json())  # how a worker process receives it
    batch = Member(in_worker, 0).task.sample((4,), range(20), seed=0)
    for prompt, truth in zip(batch.prompts, batch.truths):
        start, end, adjacency = parse(prompt)
        assert len(adjacency) == 10 and len(prompt) == 9 * 10
        assert bfs_path(adjacency, start, end) == (truth.split(">"), 10) and len(truth.split(">")) == 5
    assert hops.nodes == 30  # the registered task keeps the paper's size

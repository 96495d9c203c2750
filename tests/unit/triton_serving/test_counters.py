"""triton_serving.counters: a Triton metric is never used by two threads at once."""

import threading

from triton_serving.counters import Counter


class OneAtATimeMetric:
    """Stands in for a pb_utils metric, which breaks if two calls overlap: the first
    call stays inside until a second thread has tried to count too."""

    def __init__(self) -> None:
        self.inside = 0
        self.overlaps = 0
        self.total = 0.0
        self.second_caller_started = threading.Event()
        self._guard = threading.Lock()

    def increment(self, value: float) -> None:
        with self._guard:
            self.inside += 1
            self.overlaps += self.inside > 1
        self.second_caller_started.wait(timeout=5)
        with self._guard:
            self.total += value
            self.inside -= 1


def test_increments_from_two_threads_never_overlap():
    metric = OneAtATimeMetric()
    counter = Counter(metric)

    first = threading.Thread(target=counter.increment, args=(1,))
    first.start()
    # The second caller announces itself, then counts: unserialised, it would be
    # inside the metric while the first still is.
    def second():
        while metric.inside == 0:  # the first call is inside before the second starts
            threading.Event().wait(0.001)
        metric.second_caller_started.set()
        counter.increment(2)

    other = threading.Thread(target=second)
    other.start()
    first.join(10)
    other.join(10)
    assert metric.overlaps == 0
    assert metric.total == 3


def test_a_counter_passes_the_value_through():
    metric = OneAtATimeMetric()
    metric.second_caller_started.set()
    counter = Counter(metric)
    counter.increment()
    counter.increment(4)
    assert metric.total == 5

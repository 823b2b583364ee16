import unittest

from insights.reports import Row, summarize

FIXTURES = [
    Row("acme", 3, 120.5),
    Row("globex", 1, 40.0),
    Row("acme", 2, 80.25),
    Row("initech", 5, 310.0),
    Row("umbrella", 0, 0.0),
]


class SummarizeTest(unittest.TestCase):
    def test_totals(self) -> None:
        self.assertEqual(summarize(FIXTURES), {"customers": 4, "orders": 11, "revenue": 550.75})

    def test_empty(self) -> None:
        self.assertEqual(summarize([]), {"customers": 0, "orders": 0, "revenue": 0})


if __name__ == "__main__":
    unittest.main()

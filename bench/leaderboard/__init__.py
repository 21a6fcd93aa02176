"""The static leaderboard: verified submissions -> one board per preset, plots, a page per run.

``model`` reads and verifies submissions into rows, ``plots`` draws the SVG charts, ``markdown``
renders report cards safely, ``build`` writes the site (see :func:`bench.leaderboard.build.build_site`).
"""

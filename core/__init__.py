"""The shared vocabulary of ecg-gateway: what every layer may import.

- :mod:`core.block`: :class:`~core.block.SampleBlock`, the one typed unit of ECG data;
- :mod:`core.events`: what a driver reports besides samples (typed device events, gaps)
  and the sink it reports to;
- :mod:`core.units`: the 2000-01-01 epoch, 24-bit integers, microvolts and millivolts;
- :mod:`core.backoff`: capped, jittered reconnect delays;
- :mod:`core.counters`: live counters that status reports read, never copy.

This package imports nothing else of ours (see ``docs/architecture.md``).
"""

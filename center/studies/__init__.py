"""Long-term patch studies (issue #13, CPT 93241-93248) at the center.

- :mod:`center.studies.chunks`: a record chunk message checked and decoded (pure);
- :mod:`center.studies.header`: the gateway's WFDB header and signal bytes (pure);
- :mod:`center.studies.store`: chunks stored once, a version verified whole, confirmed to
  the gateway, attached to its study (inside the ingest transaction);
- :mod:`center.studies.scan`: the scanning analysis of each verified record (``dsp``);
- :mod:`center.studies.read`: studies, records and signal read back (viewer, export, report);
- :mod:`center.studies.export`: EDF+ and WFDB (zip) of a whole study.
"""

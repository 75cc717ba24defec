"""Captioning an archive too large for one machine: the same engine on a Ray cluster.

``imgcap archive caption ROOT... --out RESULTS`` lists the photos, skips those whose result is
already stored, and captions the rest with Ray Data: a pool of actors, each holding one loaded
:class:`~model.captioner.Captioner`. Results go into one Parquet dataset, a file at a time, so a run
that is stopped at any point can be started again. ``imgcap archive export RESULTS`` turns them into
a CSV or applies them to the photos' XMP sidecars with the metadata layer's usual safety rules.

Modules: :mod:`.inputs` (finding the photos), :mod:`.results` (the Parquet dataset: schema, keys,
atomic part files), :mod:`.worker` (the actor), :mod:`.pipeline` (the Ray run on the driver),
:mod:`.export` (CSV and sidecars) and :mod:`.commands` (the command line).

Ray and pyarrow come with the optional extra ``imgcap[cluster]``. Only :mod:`.commands` is imported by
the CLI, and it imports neither: the app, the CLI and the desktop binary never need them.
"""

INSTALL_HINT = "imgcap archive needs the cluster extra: pip install 'imgcap[cluster]' (Ray Data and pyarrow)"

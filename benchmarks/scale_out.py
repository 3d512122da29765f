"""predict throughput on a Dask cluster of 1 and 2 worker processes against local predict.

Times, side by side in one run (interleaved) on the same image files,

* ``local``: ``clf.predict(paths)`` in this process;
* ``dask, N workers``: ``clf.predict(dask_array_of_paths).compute()`` on a
  ``distributed.LocalCluster`` of N processes with one thread each, for N = 1 and 2
  (both clusters are started first, and each worker has named one batch before timing,
  so backbone building is not timed);

and prints images per second and each one's ratio to local. Each worker process and
this process use one torch thread: the scaling measured is the cluster's, not torch's.
The classifier is ``ZeroShotCLIP`` (the predict path ``NeaRClassifier`` runs) on the
small random-init ViT of ``predict_speed.py``.

Needs ``pip install "skvf[dask]"``. Run: ``python benchmarks/scale_out.py [--images 256]``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np
from _timing import interleaved_medians
from predict_speed import BACKBONES, write_images


def _one_torch_thread():
    import torch

    torch.set_num_threads(1)


def main(argv=None) -> dict:
    """Run the benchmark; returns images per second for each setting."""
    import dask.array as da
    import distributed

    from skvf_bench.baselines import ZeroShotCLIP
    from skvf_bench.datasets import load_digits_images
    from skvf_bench.simulation import NoisyOracleLabeler, make_oracle

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=32, help="paths per Dask block")
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)
    _one_torch_thread()

    name, kwargs = BACKBONES["small ViT (224 px, 2x128)"]
    train, names = load_digits_images(scale=1)
    labeler = NoisyOracleLabeler(make_oracle(train[:10], names[:10]), noise_rate=0.0)
    clf = ZeroShotCLIP(
        labeler=labeler, backbone=name, pretrained=None, backbone_kwargs=kwargs, device="cpu"
    ).fit(train[:10])

    with tempfile.TemporaryDirectory() as folder:
        paths = write_images(Path(folder), arguments.images, 256)
        array = da.from_array(np.asarray(paths, dtype=object), chunks=arguments.chunk)
        clusters = [
            distributed.LocalCluster(
                n_workers=n, processes=True, threads_per_worker=1, dashboard_address=None
            )
            for n in (1, 2)
        ]
        clients = [distributed.Client(cluster, set_as_default=False) for cluster in clusters]
        try:
            for client in clients:
                client.run(_one_torch_thread)
                client.run(lambda: logging.getLogger().setLevel(logging.ERROR))
                # Every worker builds its backbone before timing starts.
                warm = da.from_array(
                    np.asarray(paths[: 2 * len(client.nthreads())], dtype=object), chunks=1
                )
                client.compute(clf.predict(warm)).result()

            def on(client):
                return lambda: client.compute(clf.predict(array)).result()

            seconds = interleaved_medians(
                [lambda: clf.predict(paths), *map(on, clients)], arguments.repeats
            )
        finally:
            for client, cluster in zip(clients, clusters, strict=True):
                client.close()
                cluster.close()
    result = {
        label: len(paths) / s
        for label, s in zip(["local", "dask, 1 worker", "dask, 2 workers"], seconds, strict=True)
    }
    print(
        f"{len(paths)} JPEG files, blocks of {arguments.chunk} paths, one torch thread per "
        f"process, median of {arguments.repeats} interleaved runs"
    )
    for label, rate in result.items():
        print(f"  {label:16s} {rate:8.1f} images/s   {rate / result['local']:5.2f} x local")
    return result


if __name__ == "__main__":
    main()

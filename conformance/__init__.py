"""Conformance suites: what every implementation of basebench's swappable parts must do.

Importable the way fsspec keeps ``fsspec/tests/abstract``, for the tests here and for an
implementation written elsewhere: ``hosts`` (``DockerHostSuite``, every kind of Docker
host), ``scanners`` (``ScannerConformance``, every ``Scanner``), ``stores``
(``StoreConformance``, every ``ResultStore``). Subclass a suite once per implementation;
``hosts`` and ``scanners`` are also pytest plugins for their session fixtures. They need
pytest, a test dependency: no runtime module (cli, flows, tasks, infra) imports them.
"""

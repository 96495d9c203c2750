"""The local runner behind `make run` (``python -m localstack``): the whole stack as
supervised processes on loopback.

* ``config``: the settings (``STACK_*`` and the ports), read from the environment;
* ``components``, ``vllm``: the process table, how each process starts and when it
  is ready;
* ``prepare/``: what the processes run on, made ready before any starts: the model
  weights (real, or generated tiny ones), the rendered Triton model repository, the
  bundled tritonserver;
* ``supervise/``: starting, watching, restarting and stopping processes, whatever
  they are: the supervisor, readiness probes, the private-/tmp launcher.
"""

"""Provider clients and stages, one package each, listed in ``worker.providers.registry``."""

"""workflows.yml → frozen models (:mod:`.models`); :func:`load_config` checks every rule."""

-- Training as a repeatable discipline: what made each version, why a run started, every tuning trial.

-- What made a version (JSON, `driftloop.retrain.build.BuildRecord`): the rows' window and fingerprint (sha256 of
-- their event ids) per split (train / validation / test, by time), the spec and the chosen hyper-parameters, the
-- seed, the versions of driftloop, torch and Python, the device, the weights' digest and the metrics.
-- `driftloop models rebuild M N` trains the version again from it.
ALTER TABLE ${database}.model_versions ADD COLUMN build String DEFAULT '';

-- Why a run started (`alert`, `schedule`, `manual`), its split sizes, its tuning, and the numbers behind a
-- skipped run (the data gate's, or the compute budget's) as JSON in `details`.
ALTER TABLE ${database}.retrain_runs ADD COLUMN trigger String DEFAULT 'alert';
ALTER TABLE ${database}.retrain_runs ADD COLUMN validation_rows UInt64 DEFAULT 0;
ALTER TABLE ${database}.retrain_runs ADD COLUMN trials UInt32 DEFAULT 0;
ALTER TABLE ${database}.retrain_runs ADD COLUMN trials_pruned UInt32 DEFAULT 0;
ALTER TABLE ${database}.retrain_runs ADD COLUMN details String DEFAULT '';

-- One row per hyper-parameter trial of a run's search: its parameters (JSON), the epochs it ran, its best
-- validation loss (what the search minimises and the pruner compares, epoch by epoch) and the gate metric on
-- the validation rows, whether it was pruned, how long it took, and whether its configuration was chosen.
CREATE TABLE IF NOT EXISTS ${database}.tuning_trials
(
    run_id             String,
    model              String,
    trial              UInt32,
    state              Enum8('complete' = 1, 'pruned' = 2, 'failed' = 3),
    pruned             UInt8,
    params             String,
    epochs             UInt16,
    validation_loss    Float64,
    metric_name        String,
    validation_metric  Float64,
    seconds            Float64,
    device             String,
    chosen             UInt8,
    started_at         DateTime('UTC')
)
ENGINE = ReplacingMergeTree()
ORDER BY (model, run_id, trial);

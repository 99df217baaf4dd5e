-- One labeled row a prediction, its latest outcome's: a label corrected later (a chargeback turning "legit" into
-- "fraud", a reviewer's verdict replacing an automatic one) is a second outcome for the same request, with an
-- event id of its own. Keyed by the outcome's event_id, `labeled` kept both rows, and accuracy, the scorecard,
-- the release gate and training counted the request twice, with both labels. Keyed by the request (and, for a
-- version in shadow, its version), the Replacing engine keeps the row joined last (`joined_at`): the correction.
-- An outcome delivered twice still collapses, as before.
--
-- `REORDER TABLE` is the migrator's own statement (0013 says how); stop the workers while it upgrades.
REORDER TABLE ${database}.labeled BY (model, toDate(ts), request_id, served, if(served, 0, model_version));

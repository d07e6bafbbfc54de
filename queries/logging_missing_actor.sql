-- id: logging.missing_actor
-- title: AI request or config change with no actor
-- category: logging
-- severity: medium
-- controls: CC7.2
-- description: An ai.request or config.change has no actor_id (missing or empty),
--   so nobody can say who triggered it.
-- remediation: Propagate the calling principal into the audit event.
SELECT
  e.event_id AS subject,
  e.tenant_id,
  e.time,
  make_array(e.event_id) AS event_ids,
  concat(e.event_type, ' ', e.event_id, ' has no actor_id') AS summary
FROM events e
WHERE e.event_type IN ('ai.request', 'config.change')
  AND (e.actor_id IS NULL OR e.actor_id = '')

-- id: xtenant.conversation
-- title: One conversation used by two tenants
-- category: xtenant
-- severity: critical
-- controls: CC6.1, C1.1
-- description: A conversation_id was used by ai.requests of two different tenants
--   at most 24 hours apart, so conversation memory may cross tenants. One alert
--   per conversation.
-- remediation: Scope conversation ids and memory stores by tenant.
SELECT
  later.conversation_id AS subject,
  later.tenant_id,
  later.time,
  make_array(earlier.event_id, later.event_id) AS event_ids,
  concat('conversation ', later.conversation_id, ' was used by tenant ', earlier.tenant_id,
         ' and then by tenant ', later.tenant_id) AS summary
FROM conversations later
JOIN conversations earlier ON earlier.conversation_id = later.conversation_id
WHERE earlier.tenant_id <> later.tenant_id
  AND (earlier.time < later.time OR (earlier.time = later.time AND earlier.event_id < later.event_id))
  AND earlier.time >= later.time - INTERVAL '24 hours'

-- id: xtenant.context
-- title: Another tenant's data placed into a prompt
-- category: xtenant
-- severity: critical
-- controls: CC6.1, C1.1
-- description: An ai.request's retrieved context (context_tenant_ids) holds data
--   owned by a tenant other than the one the request is made for.
-- remediation: Filter retrieval by tenant before building the prompt, and check the
--   index or cache that returned the foreign chunk.
SELECT
  e.event_id AS subject,
  e.tenant_id,
  e.time,
  make_array(e.event_id) AS event_ids,
  concat('request ', coalesce(e.request_id, e.event_id), ' of tenant ', e.tenant_id,
         ' carried context owned by [', array_to_string(array_distinct(array_remove_all(e.context_tenant_ids, e.tenant_id)), ', '), ']') AS summary
FROM events e
WHERE e.event_type = 'ai.request'
  AND e.tenant_id IS NOT NULL
  AND cardinality(array_remove_all(e.context_tenant_ids, e.tenant_id)) > 0

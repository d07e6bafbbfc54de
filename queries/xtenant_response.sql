-- id: xtenant.response
-- title: Response delivered to the wrong tenant
-- category: xtenant
-- severity: critical
-- controls: CC6.1, C1.1
-- description: An ai.response was delivered to a tenant other than the tenant of
--   an ai.request with the same request_id at most one hour before or after it.
--   Either event may arrive first.
-- horizon: 1h
-- remediation: Check how responses are routed back to callers (shared queues,
--   caches keyed without tenant) and notify the affected tenants.
SELECT
  resp.event_id AS subject,
  resp.tenant_id,
  resp.time,
  make_array(req.event_id, resp.event_id) AS event_ids,
  concat('response to request ', resp.request_id, ' was delivered to tenant ', resp.tenant_id,
         ' but the request came from tenant ', req.tenant_id) AS summary
FROM history resp
JOIN history req ON req.request_id = resp.request_id
WHERE resp.event_type = 'ai.response'
  AND req.event_type = 'ai.request'
  AND req.tenant_id <> resp.tenant_id
  AND req.time >= resp.time - INTERVAL '1 hour'
  AND req.time <= resp.time + INTERVAL '1 hour'

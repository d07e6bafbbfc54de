-- id: vendor.region
-- title: AI request processed outside the tenant's allowed regions
-- category: vendor
-- severity: high
-- controls: CC6.7, C1.1
-- description: An ai.request was processed by the provider in a vendor_region that
--   is not among its tenant's allowed regions (its [[tenant]] entry merged over
--   [tenant_defaults]).
-- remediation: Pin the provider endpoint to an allowed region for this tenant.
SELECT
  e.event_id AS subject,
  e.tenant_id,
  e.time,
  make_array(e.event_id) AS event_ids,
  concat('request ', coalesce(e.request_id, e.event_id), ' of tenant ', e.tenant_id,
         ' was processed in ', e.vendor_region, ', outside its allowed regions') AS summary
FROM events e
WHERE e.event_type = 'ai.request'
  AND e.vendor_region IS NOT NULL
  AND e.tenant_id IS NOT NULL
  AND NOT tenant_region_allowed(e.tenant_id, e.vendor_region)

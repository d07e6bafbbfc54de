-- id: vendor.trains_on_data
-- title: Customer data sent to a vendor that trains on it
-- category: vendor
-- severity: critical
-- controls: CC9.2, C1.1, P6.1
-- description: An ai.request carrying customer data (customer_data, pii, phi or
--   pci) went to a listed vendor whose policy entry says it trains on what it is sent.
-- remediation: Turn on the vendor's zero-retention / no-training option and update
--   the policy, or keep customer data away from this vendor.
SELECT
  e.event_id AS subject,
  e.tenant_id,
  e.time,
  make_array(e.event_id) AS event_ids,
  concat('request ', coalesce(e.request_id, e.event_id), ' sent customer data to ', e.provider,
         ', which trains on customer data') AS summary
FROM events e
JOIN policy_vendors v ON v.provider = e.provider
WHERE e.event_type = 'ai.request'
  AND v.trains_on_customer_data
  AND array_has_any(e.data_classes, make_array('customer_data', 'pii', 'phi', 'pci'))

-- id: vendor.data_class
-- title: Data class not allowed for this vendor
-- category: vendor
-- severity: high
-- controls: CC6.7, C1.1
-- description: An ai.request to a listed vendor carried a class of data that the
--   vendor's allowed_data_classes does not include.
-- remediation: Redact or block that data class before the call, or widen the
--   vendor's allowed classes after review.
SELECT
  e.event_id AS subject,
  e.tenant_id,
  e.time,
  make_array(e.event_id) AS event_ids,
  concat('request ', coalesce(e.request_id, e.event_id), ' sent data classes [',
         array_to_string(array_except(e.data_classes, v.allowed_data_classes), ', '),
         '] to ', e.provider, ', which may not receive them') AS summary
FROM events e
JOIN policy_vendors v ON v.provider = e.provider
WHERE e.event_type = 'ai.request'
  AND NOT array_has_all(v.allowed_data_classes, e.data_classes)

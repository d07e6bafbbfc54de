-- id: vendor.unapproved
-- title: AI request sent to an unapproved vendor
-- category: vendor
-- severity: high
-- controls: CC9.2, CC6.7
-- description: An ai.request went to a provider that has no [[vendor]] entry in
--   the policy, or whose entry says no data processing agreement is signed.
-- remediation: Stop routing the feature to this provider, or complete the vendor
--   assessment and sign a DPA, then add the provider to the policy.
SELECT
  e.event_id AS subject,
  e.tenant_id,
  e.time,
  make_array(e.event_id) AS event_ids,
  concat('request ', coalesce(e.request_id, e.event_id), ' was sent to provider ', e.provider,
         CASE WHEN v.provider IS NULL THEN ', which the policy does not list'
              ELSE ', which has no signed DPA' END) AS summary
FROM events e
LEFT JOIN policy_vendors v ON v.provider = e.provider
WHERE e.event_type = 'ai.request'
  AND e.provider IS NOT NULL
  AND (v.provider IS NULL OR NOT v.dpa_signed)

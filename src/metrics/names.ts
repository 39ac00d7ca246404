/**
 * The names and types of every colo-agent metric: the contract that alert rules and dashboards
 * are written against. Renaming one breaks them, so names only ever get added here.
 *
 * Kept apart from the registry so tests of rules and dashboards can import the list without
 * creating any metric.
 */

export type MetricType = 'counter' | 'gauge' | 'histogram';

/** Name -> Prometheus type. The registry creates exactly these (plus Node's default process metrics). */
export const METRIC_TYPES = {
  colo_agent_build_info: 'gauge',
  colo_agent_state: 'gauge',
  colo_agent_role: 'gauge',
  colo_agent_maintenance: 'gauge',
  colo_agent_colo_mode: 'gauge',
  colo_agent_checkpoints_total: 'counter',
  colo_agent_checkpoint_pause_seconds: 'histogram',
  colo_agent_last_checkpoint_timestamp_seconds: 'gauge',
  colo_agent_checkpoint_in_progress: 'gauge',
  colo_agent_checkpoint_stalled: 'gauge',
  colo_agent_checkpoint_stalls_total: 'counter',
  colo_agent_colo_starts_total: 'counter',
  colo_agent_colo_exits_total: 'counter',
  colo_agent_qemu_up: 'gauge',
  colo_agent_peer_up: 'gauge',
  colo_agent_peer_state: 'gauge',
  colo_agent_link_up: 'gauge',
  colo_agent_heartbeats_sent_total: 'counter',
  colo_agent_heartbeats_received_total: 'counter',
  colo_agent_heartbeat_rtt_seconds: 'histogram',
  colo_agent_heartbeat_rejected_total: 'counter',
  colo_agent_peer_outages_total: 'counter',
  colo_agent_peer_outage_duration_seconds: 'histogram',
  colo_agent_peer_outage_seconds: 'gauge',
  colo_agent_detection_latency_seconds: 'histogram',
  colo_agent_failovers_total: 'counter',
  colo_agent_failover_duration_seconds: 'histogram',
  colo_agent_failover_step_duration_seconds: 'histogram',
  colo_agent_last_failover_timestamp_seconds: 'gauge',
  colo_agent_qmp_command_duration_seconds: 'histogram',
  colo_agent_qmp_errors_total: 'counter',
  colo_agent_epoch: 'gauge',
  colo_agent_epoch_stale: 'gauge',
  colo_agent_arbiter_reachable: 'gauge',
  colo_agent_arbitrations_total: 'counter',
  colo_agent_fencing_total: 'counter',
  colo_agent_guest_stops_total: 'counter',
  colo_agent_resyncs_total: 'counter',
  colo_agent_resync_duration_seconds: 'histogram',
  colo_agent_resync_bytes_total: 'counter',
  colo_agent_resync_progress_ratio: 'gauge',
  colo_agent_switchover_pause_seconds: 'histogram',
  colo_agent_unprotected_seconds: 'gauge',
  colo_agent_unprotected_duration_seconds: 'histogram',
  colo_agent_qemu_launches_total: 'counter',
  colo_agent_qemu_exits_total: 'counter',
  colo_agent_qemu_launch_gave_up: 'gauge',
} as const satisfies Record<string, MetricType>;

export type MetricName = keyof typeof METRIC_TYPES;

/** Every colo_agent_* metric name, as it appears in `# TYPE` lines. */
export const METRIC_NAMES: readonly MetricName[] = Object.keys(METRIC_TYPES) as MetricName[];

/**
 * The series names a query may use for a metric: histograms expose `_bucket`, `_sum` and `_count`
 * instead of the bare name. For checking PromQL in alert rules and dashboards.
 */
export function seriesNames(name: MetricName): string[] {
  return METRIC_TYPES[name] === 'histogram' ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : [name];
}

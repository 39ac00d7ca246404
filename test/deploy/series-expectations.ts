/**
 * What must fire on each recorded (or derived, or hand-written) series fixture, and nothing else,
 * ever (series-promtool.ts checks both). The markers are the scenario steps series-scenarios.ts
 * recorded; each alert must be firing by its marker + its rule's `for:` + a margin.
 *
 * Routine paths page for nothing. The one alert allowed on them is ColoFailoverHappened after the
 * takeovers that start a failback: the agent has no planned switch-over (`colo-agent failover` is the
 * operator's path for a dead peer, with the agent stopped), so every takeover answers a lost host,
 * which is what that warning reports, by design ("find out why the peer was lost").
 */
import type { ExpectedAlert, SeriesExpectation } from './series-promtool.js';

/** ColoAgentUnprotectedTooLong: the gauge passes 1800 s, then its `for: 5m`. */
const UNPROTECTED_S = 1800 + 300 + 30;

const solo = (instance: string, marker: string): ExpectedAlert[] => [
  { alert: 'ColoRunningSoloTooLong', instance, marker },
  { alert: 'ColoAgentUnprotectedTooLong', instance, marker, atSeconds: UNPROTECTED_S },
];

export const EXPECTATIONS: Record<string, SeriesExpectation> = {
  // ---- routine: nothing pages
  'planned-work': { fires: [] },
  'failback-both-ways': {
    fires: [
      { alert: 'ColoFailoverHappened', instance: 'a', marker: 'crash-b' },
      { alert: 'ColoFailoverHappened', instance: 'b', marker: 'crash-a' },
    ],
  },

  // ---- faults
  'power-loss': {
    fires: [
      { alert: 'ColoAgentDown', instance: 'b', marker: 'power-loss-b' },
      { alert: 'ColoPeerDown', instance: 'a', marker: 'power-loss-b' },
      { alert: 'ColoFailoverHappened', instance: 'a', marker: 'power-loss-b' },
      ...solo('a', 'power-loss-b'),
    ],
  },
  'network-faults': {
    fires: [
      { alert: 'ColoHeartbeatLinkDown', instance: 'a', marker: 'cut-mgmt' },
      { alert: 'ColoHeartbeatLinkDown', instance: 'b', marker: 'cut-mgmt' },
      { alert: 'ColoHeartbeatAuthFailures', instance: 'a', marker: 'wrong-key' },
      { alert: 'ColoAgentArbiterUnreachable', instance: 'a', marker: 'witness-down' },
      { alert: 'ColoAgentArbiterUnreachable', instance: 'b', marker: 'witness-down' },
      { alert: 'ColoAgentDown', instance: 'w', marker: 'witness-down' },
    ],
  },
  'isolate-primary': {
    fires: [
      // The lease stop is sent at once, but QEMU answers it only once the link is back (COLO is blocked on it).
      { alert: 'ColoAgentGuestStopped', instance: 'a', marker: 'heal' },
      { alert: 'ColoFailoverHappened', instance: 'b', marker: 'isolate-a' },
      { alert: 'ColoAgentEpochStale', instance: 'a', marker: 'heal' },
      ...solo('b', 'isolate-a'),
    ],
  },
  'split-brain': {
    fires: [
      { alert: 'ColoSplitBrainRisk', marker: 'partition' },
      { alert: 'ColoAgentSplitBrainSuspected', marker: 'partition' },
      ...(['a', 'b'] as const).flatMap((h) => [
        { alert: 'ColoPeerDown', instance: h, marker: 'partition' },
        { alert: 'ColoFailoverHappened', instance: h, marker: 'partition' },
        ...solo(h, 'partition'),
      ]),
    ],
  },
  'failover-failed': {
    fires: [
      { alert: 'ColoFailoverFailed', instance: 'b', marker: 'failed' },
      { alert: 'ColoAgentFailed', instance: 'b', marker: 'failed' },
      { alert: 'ColoFailoverHappened', instance: 'b', marker: 'failed' },
      { alert: 'ColoPeerDown', instance: 'b', marker: 'crash-a' },
      { alert: 'ColoAgentDown', instance: 'a', marker: 'crash-a' },
    ],
  },
  'fencing-failed': {
    fires: [
      { alert: 'ColoAgentFencingFailed', instance: 'b', marker: 'crash-a' },
      { alert: 'ColoAgentFailed', instance: 'b', marker: 'crash-a' },
      { alert: 'ColoPeerDown', instance: 'b', marker: 'crash-a' },
      { alert: 'ColoAgentDown', instance: 'a', marker: 'crash-a' },
    ],
  },
  'qemu-lost': {
    fires: [
      { alert: 'ColoFailoverHappened', instance: 'a', marker: 'kill-qemu-b' },
      { alert: 'ColoQemuUnreachable', instance: 'b', marker: 'restart-b' },
      // b lost the guest to a's takeover and has no QEMU to come back with: it stays stale, and says so.
      { alert: 'ColoAgentEpochStale', instance: 'b', marker: 'restart-b' },
      { alert: 'ColoAgentQemuRestarting', instance: 'b', marker: 'gave-up' },
      { alert: 'ColoAgentQemuLaunchGaveUp', instance: 'b', marker: 'gave-up' },
      ...solo('a', 'kill-qemu-b'),
    ],
  },
  'checkpoint-stall': {
    fires: [
      { alert: 'ColoCheckpointStalled', instance: 'a', marker: 'stalled' },
      // The deadlocked primary's QMP stops answering: its COLO mode reads unknown while the agent is peer-up,
      // which is true (nothing replicates) and the same incident (deploy/README.md inhibits it).
      { alert: 'ColoReplicationNotRunning', instance: 'a', marker: 'stalled' },
    ],
  },
  // Recorded on 11.1: both guests stop in the frozen checkpoint, so both agents report it. Neither QEMU
  // answers QMP while it is stuck (COLO mode unknown on a and b, ~57 s), under ColoReplicationNotRunning's 2m.
  'checkpoint-stall-frozen-secondary': {
    fires: [
      { alert: 'ColoCheckpointStalled', instance: 'a', marker: 'frozen' },
      { alert: 'ColoCheckpointStalled', instance: 'b', marker: 'frozen' },
    ],
  },
  'replication-stopped': {
    fires: [{ alert: 'ColoReplicationNotRunning', instance: 'a', marker: 'colo-stopped' }],
  },

  // ---- derived (a real recording relabelled)
  'targets-missing': { fires: [{ alert: 'ColoAgentTargetsMissing', marker: 'start', atSeconds: 600 + 30 }] },
  // Each agent's build_info series starts anew at its restart (a planned stop makes it stale), and so does the 10m.
  'pair-label-missing': {
    fires: [
      { alert: 'ColoPairLabelMissing', instance: 'a', marker: 'start-a' },
      { alert: 'ColoPairLabelMissing', instance: 'b', marker: 'start-b' },
      { alert: 'ColoPairLabelMissing', instance: 'w', marker: 'start' },
    ],
  },

  // ---- hand-written
  'resume-failed': {
    fires: [
      { alert: 'ColoAgentResumeFailed', instance: 'a', marker: 'failed' },
      { alert: 'ColoAgentFailed', instance: 'a', marker: 'failed' },
    ],
  },
  'resume-rolled-back': { fires: [{ alert: 'ColoAgentResumeRolledBack', instance: 'a', marker: 'third' }] },
  'switchover-pause-high': { fires: [{ alert: 'ColoAgentSwitchoverPauseHigh', instance: 'a', marker: 'resume' }] },
};

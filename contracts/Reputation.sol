// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title Reputation
/// @notice Per-node trust, a fixed-point number in [0, SCALE] (SCALE = 1e6 means 1.0), turned from
///         contribution scores into an exponential moving average:
///         `new = (old * (SCALE - alpha) + score * alpha) / SCALE` (integer division, rounds down).
/// @dev One concern: reputation. Only the ledger (LEDGER_ROLE) feeds scores, only the registry
///      (REGISTRY_ROLE) reports status changes, only the admin changes parameters. Reputation is per
///      node and carries across tasks. The registry pushes every change of a node's Active status in
///      the same transaction (`statusChanged`), so the record holds an exact mirror of it; scoring an
///      inactive node reverts. Keeping that bit in the slot the commit updates anyway saves the commit
///      a cold read of the registry per participant (~2.2k gas each).
contract Reputation is AccessControl {
    /// @notice Fixed-point scale of reputations, scores and alpha: 1e6 == 1.0.
    uint256 public constant SCALE = 1_000_000;
    /// @notice Role of the ModelLedger, the only writer of scores.
    bytes32 public constant LEDGER_ROLE = keccak256("LEDGER_ROLE");
    /// @notice Role of the NodeRegistry, which enrolls nodes when they are approved.
    bytes32 public constant REGISTRY_ROLE = keccak256("REGISTRY_ROLE");

    /// @notice One slot per node: value, number of scored rounds, whether it was ever enrolled (had
    ///         its starting value set) and whether it is currently Active in the registry.
    struct Record {
        uint64 value;
        uint64 updates;
        bool enrolled;
        bool active;
    }

    mapping(address => Record) private _records;
    /// @notice Weight of the newest score in the moving average, in SCALE units.
    uint64 public alpha;
    /// @notice Reputation a node starts with when it is enrolled, in SCALE units.
    uint64 public initialReputation;

    /// @notice A parameter was outside [0, SCALE] (alpha must also be non-zero).
    error InvalidParameter(string name, uint256 value);
    /// @notice A score was above SCALE.
    error ScoreOutOfRange(address node, uint256 score);
    /// @notice `nodes` and `scores` had different lengths.
    error LengthMismatch(uint256 nodes, uint256 scores);
    /// @notice A scored node is not Active in the registry.
    error InactiveParticipant(address node);

    /// @notice The moving-average parameters changed.
    event ParametersChanged(uint64 alpha, uint64 initialReputation);
    /// @notice A node's reputation changed (enrollment or a scored round).
    event ReputationUpdated(address indexed node, uint256 value);
    /// @notice The mirrored Active status of a node changed (pushed by the registry).
    event EligibilityChanged(address indexed node, bool active);

    /// @param admin Receives DEFAULT_ADMIN_ROLE.
    /// @param alpha_ Initial moving-average weight (SCALE units).
    /// @param initialReputation_ Reputation of a newly enrolled node (SCALE units).
    constructor(address admin, uint64 alpha_, uint64 initialReputation_) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _setParameters(alpha_, initialReputation_);
    }

    /// @notice Change the moving-average parameters.
    /// @param alpha_ Weight of the newest score, in (0, SCALE].
    /// @param initialReputation_ Starting reputation, in [0, SCALE].
    function setParameters(uint64 alpha_, uint64 initialReputation_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setParameters(alpha_, initialReputation_);
    }

    /// @notice Mirror a change of the node's Active status; the first activation enrolls the node
    ///         with the starting reputation (so no commit pays for a fresh storage slot).
    /// @param node Address of the node.
    /// @param active Whether the node is now Active in the registry.
    function statusChanged(address node, bool active) external onlyRole(REGISTRY_ROLE) {
        Record storage r = _records[node];
        r.active = active;
        emit EligibilityChanged(node, active);
        if (active && !r.enrolled) {
            r.enrolled = true;
            r.value = initialReputation;
            emit ReputationUpdated(node, initialReputation);
        }
    }

    /// @notice Fold one round's scores into the participants' reputations; all must be Active.
    /// @dev Bounded by the participants of one round, never by all nodes.
    /// @param nodes Participants of the round.
    /// @param scores Their scores in SCALE units, same order.
    function recordScores(address[] calldata nodes, uint256[] calldata scores) external onlyRole(LEDGER_ROLE) {
        if (nodes.length != scores.length) revert LengthMismatch(nodes.length, scores.length);
        uint256 a = alpha;
        uint256 keep = SCALE - a;
        for (uint256 i = 0; i < nodes.length; ) {
            address node = nodes[i];
            uint256 s = scores[i];
            if (s > SCALE) revert ScoreOutOfRange(node, s);
            Record storage r = _records[node];
            if (!r.active) revert InactiveParticipant(node);
            uint256 old = r.value;
            // Bounded by SCALE^2 (1e12): no overflow, so the arithmetic is unchecked.
            unchecked {
                uint256 updated = (old * keep + s * a) / SCALE;
                r.value = uint64(updated);
                r.updates += 1;
                emit ReputationUpdated(node, updated);
                ++i;
            }
        }
    }

    /// @notice Current reputation of a node (the starting value if it was never enrolled).
    /// @param node Address of the node.
    /// @return Reputation in SCALE units.
    function reputationOf(address node) external view returns (uint256) {
        Record memory r = _records[node];
        return r.enrolled ? r.value : initialReputation;
    }

    /// @notice Whether the node is Active, as mirrored from the registry.
    /// @param node Address of the node.
    /// @return True if Active.
    function isEligible(address node) external view returns (bool) {
        return _records[node].active;
    }

    /// @notice Number of scored rounds a node took part in.
    /// @param node Address of the node.
    /// @return Count of updates.
    function updatesOf(address node) external view returns (uint256) {
        return _records[node].updates;
    }

    function _setParameters(uint64 alpha_, uint64 initialReputation_) private {
        if (alpha_ == 0 || alpha_ > SCALE) revert InvalidParameter("alpha", alpha_);
        if (initialReputation_ > SCALE) revert InvalidParameter("initialReputation", initialReputation_);
        alpha = alpha_;
        initialReputation = initialReputation_;
        emit ParametersChanged(alpha_, initialReputation_);
    }
}

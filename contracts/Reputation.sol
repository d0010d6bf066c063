// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title Reputation
/// @notice Per-node trust, a fixed-point number in [0, SCALE] (SCALE = 1e6 means 1.0), turned from
///         contribution scores into an exponential moving average:
///         `new = (old * (SCALE - alpha) + score * alpha) / SCALE` (integer division, rounds down).
/// @dev One concern: reputation. Only the ledger (LEDGER_ROLE) feeds scores, only the registry
///      (REGISTRY_ROLE) enrolls nodes, only the admin changes parameters. Reputation is per node and
///      carries across tasks.
contract Reputation is AccessControl {
    /// @notice Fixed-point scale of reputations, scores and alpha: 1e6 == 1.0.
    uint256 public constant SCALE = 1_000_000;
    /// @notice Role of the ModelLedger, the only writer of scores.
    bytes32 public constant LEDGER_ROLE = keccak256("LEDGER_ROLE");
    /// @notice Role of the NodeRegistry, which enrolls nodes when they are approved.
    bytes32 public constant REGISTRY_ROLE = keccak256("REGISTRY_ROLE");

    /// @notice One slot per node: value, number of scored rounds, and whether it was enrolled.
    struct Record {
        uint64 value;
        uint64 updates;
        bool enrolled;
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

    /// @notice The moving-average parameters changed.
    event ParametersChanged(uint64 alpha, uint64 initialReputation);
    /// @notice A node's reputation changed (enrollment or a scored round).
    event ReputationUpdated(address indexed node, uint256 value);

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

    /// @notice Give a newly approved node its starting reputation (no-op if already enrolled).
    /// @dev Called by the registry so the first scored round does not pay for a fresh storage slot.
    /// @param node Address of the node.
    function enroll(address node) external onlyRole(REGISTRY_ROLE) {
        Record storage r = _records[node];
        if (r.enrolled) return;
        r.enrolled = true;
        r.value = initialReputation;
        emit ReputationUpdated(node, initialReputation);
    }

    /// @notice Fold one round's scores into the participants' reputations.
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
            uint256 old = r.enrolled ? r.value : initialReputation;
            // Bounded by SCALE^2 (1e12): no overflow, so the arithmetic is unchecked.
            unchecked {
                uint256 updated = (old * keep + s * a) / SCALE;
                r.value = uint64(updated);
                r.updates += 1;
                r.enrolled = true;
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

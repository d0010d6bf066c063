// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IReputation} from "./interfaces/IReputation.sol";
import {IStatusHook} from "./interfaces/IStatusHook.sol";
import {ISuspender} from "./interfaces/ISuspender.sol";

/// @title Reputation
/// @notice Per-node trust, a fixed-point number in [0, SCALE] (SCALE = 1e6 means 1.0). Each committed
///         round updates it (integer division, rounding down):
///         - scored participant: `new = (old * (SCALE - alpha) + score * alpha) / SCALE`, but never below
///           min(old, suspendThreshold): contribution scores alone do not suspend a node
///         - selected but no answer in time (missed): `new = old * (SCALE - missDecay) / SCALE`
///         - reply rejected as malformed or outlier (penalized): `new = old * (SCALE - penalty) / SCALE`
///         A node whose reputation falls below `suspendThreshold` (through penalties or missed rounds) is
///         suspended in the registry at once;
///         only the registrar can reinstate it (approve), which resets it to `initialReputation`.
/// @dev One concern: reputation. Only the ledger (LEDGER_ROLE) feeds scores, only the registry
///      (REGISTRY_ROLE) reports status changes, only the admin changes parameters. Reputation is per
///      node and carries across tasks. The registry pushes every change of a node's Active status in
///      the same transaction (`statusChanged`), so the record holds an exact mirror of it; scoring an
///      inactive node reverts. Keeping that bit in the slot the commit updates anyway saves the commit
///      a cold read of the registry per participant (~2.2k gas each). Implements IReputation (called
///      by ModelLedger) and IStatusHook (called by NodeRegistry); suspends through ISuspender.
contract Reputation is AccessControl, IReputation, IStatusHook {
    /// @notice Fixed-point scale of reputations, scores and parameters: 1e6 == 1.0.
    uint256 public constant SCALE = 1_000_000;
    /// @notice Role of the ModelLedger, the only writer of round outcomes.
    bytes32 public constant LEDGER_ROLE = keccak256("LEDGER_ROLE");
    /// @notice Role of the NodeRegistry, which reports status changes.
    bytes32 public constant REGISTRY_ROLE = keccak256("REGISTRY_ROLE");

    /// @notice All parameters, in SCALE units, in one slot.
    struct Parameters {
        uint32 alpha;
        uint32 initialReputation;
        uint32 missDecay;
        uint32 penalty;
        uint32 suspendThreshold;
    }

    /// @notice A parameter setting and the block it takes effect from, flat so it fits one slot (a
    ///         nested Parameters struct would start a second one).
    struct ParameterChange {
        uint64 fromBlock;
        uint32 alpha;
        uint32 initialReputation;
        uint32 missDecay;
        uint32 penalty;
        uint32 suspendThreshold;
    }

    /// @notice One slot per node: value, counts of scored / missed / penalized rounds, whether it was
    ///         ever enrolled (had its starting value set) and whether it is currently Active.
    struct Record {
        uint64 value;
        uint64 updates;
        uint32 missed;
        uint32 penalties;
        bool enrolled;
        bool active;
    }

    /// @notice The registry Reputation suspends nodes in.
    ISuspender public immutable registry;
    Parameters private _params;
    ParameterChange[] private _history;
    mapping(address => Record) private _records;

    /// @notice A parameter was outside [0, SCALE] (alpha must also be non-zero).
    error InvalidParameter(string name, uint256 value);
    /// @notice No parameters were in effect at that block (it precedes the deployment).
    error NoParametersAt(uint256 blockNumber);

    /// @notice The parameters changed.
    event ParametersChanged(
        uint32 alpha, uint32 initialReputation, uint32 missDecay, uint32 penalty, uint32 suspendThreshold
    );

    /// @notice Wired at creation (no later grant transaction to front-run): the registry gets
    ///         REGISTRY_ROLE and the ledger LEDGER_ROLE here.
    /// @param admin Receives DEFAULT_ADMIN_ROLE.
    /// @param registry_ Registry to suspend nodes in (grants this contract SUSPENDER_ROLE); receives
    ///        REGISTRY_ROLE.
    /// @param ledger The ModelLedger (may not have code yet: its CREATE address); receives LEDGER_ROLE.
    /// @param params Initial parameters (SCALE units).
    constructor(address admin, ISuspender registry_, address ledger, Parameters memory params) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(REGISTRY_ROLE, address(registry_));
        _grantRole(LEDGER_ROLE, ledger);
        registry = registry_;
        _setParameters(params);
    }

    /// @notice Change all parameters at once, from this block on: rounds committed in this block or
    ///         later use them (recordRound at once; commitment-mode folds through parametersAt).
    /// @param params New parameters (SCALE units); alpha in (0, SCALE], the others in [0, SCALE].
    function setParameters(Parameters calldata params) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setParameters(params);
    }

    /// @notice Current parameters.
    /// @return The parameters (SCALE units).
    function parameters() external view returns (Parameters memory) {
        return _params;
    }

    /// @notice The parameters in effect at a block: those of the last change made in it or before, so a
    ///         commitment-mode round committed in block B is folded, by the coordinator and every
    ///         validator alike, with parametersAt(B) however the parameters changed since.
    /// @dev Binary search over the append-only history (a view: O(log changes)).
    /// @param blockNumber The block.
    /// @return The parameters (SCALE units); reverts NoParametersAt before the deployment.
    function parametersAt(uint256 blockNumber) external view returns (Parameters memory) {
        uint256 low = 0;
        uint256 high = _history.length;
        while (low < high) {
            uint256 mid = (low + high) / 2;
            if (_history[mid].fromBlock <= blockNumber) low = mid + 1;
            else high = mid;
        }
        if (low == 0) revert NoParametersAt(blockNumber);
        ParameterChange storage h = _history[low - 1];
        return Parameters(h.alpha, h.initialReputation, h.missDecay, h.penalty, h.suspendThreshold);
    }

    /// @notice Number of parameter settings recorded (the constructor's included).
    /// @return The count.
    function parameterChanges() external view returns (uint256) {
        return _history.length;
    }

    /// @notice Weight of the newest score in the moving average (SCALE units).
    /// @return alpha.
    function alpha() external view returns (uint256) {
        return _params.alpha;
    }

    /// @notice Reputation of a newly enrolled or reinstated node (SCALE units).
    /// @return initialReputation.
    function initialReputation() external view returns (uint256) {
        return _params.initialReputation;
    }

    /// @inheritdoc IStatusHook
    /// @dev Only REGISTRY_ROLE. Mirrors the status into the node's record. The first activation enrolls
    ///      the node with the starting reputation (so no commit pays for a fresh storage slot); a
    ///      reinstatement of a node below the threshold resets it to the starting reputation.
    function statusChanged(address node, bool active) external override onlyRole(REGISTRY_ROLE) {
        Record storage r = _records[node];
        r.active = active;
        emit EligibilityChanged(node, active);
        if (!active) return;
        uint32 initial = _params.initialReputation;
        if (!r.enrolled || r.value < _params.suspendThreshold) {
            r.enrolled = true;
            r.value = initial;
            emit ReputationUpdated(node, initial);
        }
    }

    /// @inheritdoc IReputation
    /// @dev Only LEDGER_ROLE. Bounded by the nodes selected in one round, never by all nodes. Missed and
    ///      penalized nodes that are no longer Active are skipped (they may have been suspended since
    ///      selection).
    function recordRound(
        address[] calldata nodes,
        uint256[] calldata scores,
        address[] calldata missed,
        address[] calldata penalized
    ) external override onlyRole(LEDGER_ROLE) {
        if (nodes.length != scores.length) revert LengthMismatch(nodes.length, scores.length);
        Parameters memory p = _params;
        uint256 a = p.alpha;
        uint256 keep = SCALE - a;
        for (uint256 i = 0; i < nodes.length; ) {
            address node = nodes[i];
            uint256 s = scores[i];
            if (s > SCALE) revert ScoreOutOfRange(node, s);
            Record storage r = _records[node];
            if (!r.active) revert InactiveParticipant(node);
            // Bounded by SCALE^2 (1e12): no overflow, so the arithmetic is unchecked.
            unchecked {
                uint256 updated = (uint256(r.value) * keep + s * a) / SCALE;
                // Low contribution alone lowers trust only down to the threshold: a node is suspended
                // for misbehaviour (rejected replies, missed rounds), not for having atypical data.
                uint256 floor = r.value < p.suspendThreshold ? r.value : p.suspendThreshold;
                if (updated < floor) updated = floor;
                r.value = uint64(updated);
                r.updates += 1;
                emit ReputationUpdated(node, updated);
                ++i;
            }
        }
        for (uint256 i = 0; i < missed.length; ++i) {
            _shrink(missed[i], SCALE - p.missDecay, p.suspendThreshold, true);
        }
        for (uint256 i = 0; i < penalized.length; ++i) {
            _shrink(penalized[i], SCALE - p.penalty, p.suspendThreshold, false);
        }
    }

    /// @notice Current reputation of a node (the starting value if it was never enrolled).
    /// @param node Address of the node.
    /// @return Reputation in SCALE units.
    function reputationOf(address node) external view returns (uint256) {
        Record memory r = _records[node];
        return r.enrolled ? r.value : _params.initialReputation;
    }

    /// @notice Current reputation of many nodes in one call, so a coordinator reads all candidates of a
    ///         round with one request however many there are (same values as `reputationOf`).
    /// @param nodes Addresses of the nodes.
    /// @return values Reputation of each node in SCALE units, in the order given.
    function reputationsOf(address[] calldata nodes) external view returns (uint256[] memory values) {
        values = new uint256[](nodes.length);
        uint256 initial = _params.initialReputation;
        for (uint256 i = 0; i < nodes.length; ++i) {
            Record storage r = _records[nodes[i]];
            values[i] = r.enrolled ? r.value : initial;
        }
    }

    /// @notice A node's full record.
    /// @param node Address of the node.
    /// @return The record.
    function recordOf(address node) external view returns (Record memory) {
        return _records[node];
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

    /// @dev Scale an Active node's reputation by `factor` / SCALE for a missed round (`miss`) or a
    ///      penalty, count it, and suspend the node if it falls below `threshold`.
    function _shrink(address node, uint256 factor, uint256 threshold, bool miss) private {
        Record storage r = _records[node];
        if (!r.active) return;
        uint256 updated = (uint256(r.value) * factor) / SCALE;
        r.value = uint64(updated);
        if (miss) {
            r.missed += 1;
            emit RoundMissed(node);
        } else {
            r.penalties += 1;
            emit Penalized(node);
        }
        emit ReputationUpdated(node, updated);
        if (updated < threshold) _suspend(node, updated);
    }

    /// @dev Suspend a node in the registry; the registry calls back statusChanged(node, false).
    function _suspend(address node, uint256 value) private {
        emit AutoSuspended(node, value);
        registry.suspend(node); // calls back statusChanged(node, false)
    }

    /// @dev Validate and store all parameters, append them to the history from this block; emits
    ///      ParametersChanged. Always a new entry (O(1)): two changes in one block leave the later one in
    ///      effect from it (parametersAt takes the last entry at or before a block), and a gas estimate
    ///      made against the previous block never takes a cheaper path than the transaction.
    function _setParameters(Parameters memory p) private {
        if (p.alpha == 0 || p.alpha > SCALE) revert InvalidParameter("alpha", p.alpha);
        if (p.initialReputation > SCALE) revert InvalidParameter("initialReputation", p.initialReputation);
        if (p.missDecay > SCALE) revert InvalidParameter("missDecay", p.missDecay);
        if (p.penalty > SCALE) revert InvalidParameter("penalty", p.penalty);
        if (p.suspendThreshold > SCALE) revert InvalidParameter("suspendThreshold", p.suspendThreshold);
        _params = p;
        _history.push(
            ParameterChange(uint64(block.number), p.alpha, p.initialReputation, p.missDecay, p.penalty, p.suspendThreshold)
        );
        emit ParametersChanged(p.alpha, p.initialReputation, p.missDecay, p.penalty, p.suspendThreshold);
    }
}

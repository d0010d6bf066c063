// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ILedgerRounds} from "./interfaces/ILedgerRounds.sol";
import {IReputation} from "./interfaces/IReputation.sol";

/// @title ModelLedger
/// @notice Tamper-proof history of model versions per training task: every round's model hash, where
///         the blob is stored, its parent, who took part and each participant's contribution score.
/// @dev One concern: model versions and contributions. Per round it stores two slots; participants
///      and scores go to events (ContributionRecorded) and to Reputation, so gas grows only by a few
///      thousand per participant. "Participants must be active" is enforced by Reputation, which
///      holds an exact mirror of the registry's Active status (see Reputation). A blob URI is stored
///      only when it differs from the task's default location `blobBase || hex(modelHash)`.
///      Implements ILedgerRounds (read by ValidationQuorum); its `Round` is ILedgerRounds.Round.
contract ModelLedger is AccessControl, ILedgerRounds {
    /// @notice Role of the federated-learning coordinator, the only account that creates tasks and
    ///         commits rounds.
    bytes32 public constant COORDINATOR_ROLE = keccak256("COORDINATOR_ROLE");

    /// @notice A training task.
    struct Task {
        address owner;
        uint64 nextRound;
        bytes32 configHash;
        string blobBase;
    }

    /// @notice Reputation contract fed with every round's scores, missed and penalized nodes.
    IReputation public immutable reputation;
    /// @notice Number of tasks created; task ids are 1..taskCount.
    uint256 public taskCount;

    mapping(uint256 => Task) private _tasks;
    mapping(uint256 => mapping(uint256 => Round)) private _rounds;
    mapping(uint256 => mapping(uint256 => string)) private _uriOverride;

    /// @notice No task has this id.
    error UnknownTask(uint256 task);
    /// @notice Only the task's owner (its creating coordinator) may write to it.
    error NotTaskOwner(uint256 task, address caller);
    /// @notice Rounds must be committed strictly in sequence.
    error RoundOutOfOrder(uint256 task, uint256 expected, uint256 given);
    /// @notice The parent hash must equal the previous round's model hash (zero for round 0).
    error ParentMismatch(uint256 task, bytes32 expected, bytes32 given);
    /// @notice A model hash of zero is not a model.
    error EmptyModelHash();
    /// @notice `participants` and `scores` had different lengths.
    error LengthMismatch(uint256 participants, uint256 scores);
    /// @notice Participants must be sorted by address, strictly ascending (this also forbids duplicates).
    error ParticipantsNotSorted(uint256 index);

    /// @notice A task was created.
    event TaskCreated(uint256 indexed task, address indexed owner, bytes32 configHash, string blobBase);
    /// @notice A task's default blob location changed.
    event TaskStoreChanged(uint256 indexed task, string blobBase);
    /// @notice A round was committed. `uri` is empty when the blob is at the task's default location.
    event RoundCommitted(
        uint256 indexed task,
        uint256 indexed round,
        bytes32 indexed modelHash,
        bytes32 parentHash,
        string uri,
        uint256 participantCount
    );
    /// @notice One participant's contribution to a committed round.
    event ContributionRecorded(uint256 indexed task, uint256 indexed round, address indexed node, uint256 score);

    /// @param admin Receives DEFAULT_ADMIN_ROLE.
    /// @param reputation_ Reputation contract fed with scores (and checking participants are active).
    constructor(address admin, IReputation reputation_) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        reputation = reputation_;
    }

    /// @notice Create a training task owned by the caller.
    /// @param configHash Hash of the task's configuration (model, data, strategy).
    /// @param blobBase Default blob location prefix; a round's blob is at blobBase followed by the
    ///        64 lowercase hex digits of its model hash.
    /// @return task The new task's id.
    function createTask(bytes32 configHash, string calldata blobBase)
        external
        onlyRole(COORDINATOR_ROLE)
        returns (uint256 task)
    {
        task = ++taskCount;
        _tasks[task] = Task(msg.sender, 0, configHash, blobBase);
        emit TaskCreated(task, msg.sender, configHash, blobBase);
    }

    /// @notice Change a task's default blob location (for rounds committed from now on and before).
    /// @param task Task id.
    /// @param blobBase New location prefix.
    function setBlobBase(uint256 task, string calldata blobBase) external onlyRole(COORDINATOR_ROLE) {
        Task storage t = _ownedTask(task);
        t.blobBase = blobBase;
        emit TaskStoreChanged(task, blobBase);
    }

    /// @notice Commit one round: the aggregated model and every participant's score.
    /// @param task Task id.
    /// @param round Round number; must be the task's next round (0 for the initial model).
    /// @param modelHash Canonical hash of the model (see README, "model hash").
    /// @param uri Where the blob is, or empty if it is at the task's default location.
    /// @param parentHash Model hash of the previous round (zero for round 0).
    /// @param participants Participants, sorted ascending by address; all must be active.
    /// @param scores Contribution scores in Reputation.SCALE units, same order.
    /// @param missed Nodes selected for the round that did not answer in time (their reputation decays).
    /// @param penalized Nodes whose reply was rejected as malformed or an outlier (they are penalized).
    function commitRound(
        uint256 task,
        uint256 round,
        bytes32 modelHash,
        string calldata uri,
        bytes32 parentHash,
        address[] calldata participants,
        uint256[] calldata scores,
        address[] calldata missed,
        address[] calldata penalized
    ) external onlyRole(COORDINATOR_ROLE) {
        _checkSequence(task, round, modelHash, parentHash);
        uint256 n = participants.length;
        if (n != scores.length) revert LengthMismatch(n, scores.length);
        _tasks[task].nextRound = uint64(round + 1);
        _rounds[task][round] = Round(modelHash, uint64(block.number), uint64(block.timestamp), uint32(n));
        if (bytes(uri).length != 0) _uriOverride[task][round] = uri;
        emit RoundCommitted(task, round, modelHash, parentHash, uri, n);
        _emitContributions(task, round, participants, scores);
        if (n + missed.length + penalized.length > 0) {
            reputation.recordRound(participants, scores, missed, penalized);
        }
    }

    /// @notice A task's record.
    /// @param task Task id.
    /// @return The task (owner, next round number, config hash, blob base).
    function getTask(uint256 task) external view returns (Task memory) {
        if (_tasks[task].owner == address(0)) revert UnknownTask(task);
        return _tasks[task];
    }

    /// @notice Number of committed rounds of a task (round 0 included).
    /// @param task Task id.
    /// @return Count of rounds.
    function roundCount(uint256 task) external view returns (uint256) {
        return _tasks[task].nextRound;
    }

    /// @inheritdoc ILedgerRounds
    function getRound(uint256 task, uint256 round) public view override returns (Round memory) {
        Round memory r = _rounds[task][round];
        if (r.modelHash == bytes32(0)) revert UnknownRound(task, round);
        return r;
    }

    /// @notice The newest committed round of a task.
    /// @param task Task id.
    /// @return round Its number.
    /// @return record Its record.
    function latestRound(uint256 task) external view returns (uint256 round, Round memory record) {
        uint256 next = _tasks[task].nextRound;
        if (next == 0) revert UnknownRound(task, 0);
        round = next - 1;
        record = _rounds[task][round];
    }

    /// @notice Where a round's blob is stored.
    /// @param task Task id.
    /// @param round Round number.
    /// @return The URI committed with the round, or the task's blobBase followed by the hash in hex.
    function roundUri(uint256 task, uint256 round) external view returns (string memory) {
        Round memory r = getRound(task, round);
        string memory o = _uriOverride[task][round];
        if (bytes(o).length != 0) return o;
        return string.concat(_tasks[task].blobBase, _hex(r.modelHash));
    }

    /// @dev Revert unless the caller owns the task, `round` is its next round, the model hash is not
    ///      zero and `parentHash` is the previous round's model hash (zero for round 0).
    function _checkSequence(uint256 task, uint256 round, bytes32 modelHash, bytes32 parentHash) private view {
        uint256 expected = _ownedTask(task).nextRound;
        if (round != expected) revert RoundOutOfOrder(task, expected, round);
        if (modelHash == bytes32(0)) revert EmptyModelHash();
        bytes32 parent = round == 0 ? bytes32(0) : _rounds[task][round - 1].modelHash;
        if (parentHash != parent) revert ParentMismatch(task, parent, parentHash);
    }

    /// @dev Emit one ContributionRecorded per participant and check that participants are sorted
    ///      strictly ascending. The sort check shares this loop: a revert undoes the events, and one
    ///      pass is cheaper.
    function _emitContributions(
        uint256 task,
        uint256 round,
        address[] calldata participants,
        uint256[] calldata scores
    ) private {
        address previous = address(0);
        for (uint256 i = 0; i < participants.length; ) {
            address node = participants[i];
            if (node <= previous) revert ParticipantsNotSorted(i);
            previous = node;
            emit ContributionRecorded(task, round, node, scores[i]);
            unchecked {
                ++i;
            }
        }
    }

    /// @dev The task's storage record; reverts UnknownTask, or NotTaskOwner unless the caller owns it.
    function _ownedTask(uint256 task) private view returns (Task storage t) {
        t = _tasks[task];
        if (t.owner == address(0)) revert UnknownTask(task);
        if (t.owner != msg.sender) revert NotTaskOwner(task, msg.sender);
    }

    /// @dev The 64 lowercase hex digits of `value`, without a 0x prefix.
    function _hex(bytes32 value) private pure returns (string memory) {
        bytes16 digits = "0123456789abcdef";
        bytes memory out = new bytes(64);
        for (uint256 i = 0; i < 32; ++i) {
            out[2 * i] = digits[uint8(value[i]) >> 4];
            out[2 * i + 1] = digits[uint8(value[i]) & 0x0f];
        }
        return string(out);
    }
}

// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {ILedgerRounds} from "./interfaces/ILedgerRounds.sol";
import {INodeStatus} from "./interfaces/INodeStatus.sol";
import {ISuspender} from "./interfaces/ISuspender.sol";
import {IValidatorSet} from "./interfaces/IValidatorSet.sol";

/// @title ReputationCheckpoints
/// @notice Reputation of commitment-mode tasks. The coordinator folds each round's outcome leaves
///         (ModelLedger.commitOutcomes) into reputations off-chain, with the same arithmetic as the
///         Reputation contract, and proposes the Merkle root of (node, reputation, active) leaves as a
///         checkpoint. Validators re-compute it from the published leaves; it takes effect once a
///         quorum of them attested the same root, and never if a quorum disputed it. Reads of a node's
///         reputation or status verify a proof against the task's latest finalized checkpoint; a
///         suspension in a finalized checkpoint is applied to the registry by anyone with its proof.
/// @dev One concern: reputation checkpoints. Every write is O(1): no loop over nodes or validators.
///      Checkpoints of a task chain: each folds from the task's previously proposed one (its base),
///      and finalizes only once its base is finalized. When a quorum rejects a checkpoint, the task's
///      next proposal builds on its latest finalized checkpoint instead (every checkpoint proposed
///      since the rejected one descends from it and can never finalize), so one rejection does not
///      wedge the task. A vote of an account that has since lost VALIDATOR_ROLE can be discounted by
///      anyone (discountVote) while the checkpoint is unresolved.
///      Leaves use OpenZeppelin's StandardMerkleTree encoding of (address, uint256, bool).
contract ReputationCheckpoints is AccessControl {
    /// @notice Role of the coordinator, the only account that proposes checkpoints.
    bytes32 public constant COORDINATOR_ROLE = keccak256("COORDINATOR_ROLE");
    /// @notice Longest dispute reason accepted, in bytes (bounds the event's gas).
    uint256 public constant MAX_REASON_BYTES = 200;
    uint8 private constant VOTE_ATTEST = 1;
    uint8 private constant VOTE_DISPUTE = 2;
    uint8 private constant VOTE_DISCOUNTED = 3;

    /// @notice One proposed checkpoint.
    struct Checkpoint {
        bytes32 root;
        uint64 task;
        uint64 throughRound;
        uint64 base;
        uint32 leafCount;
        uint16 attestations;
        uint16 disputes;
        bool finalized;
        bool rejected;
    }

    /// @notice The ledger whose commitment-mode rounds the checkpoints fold.
    ILedgerRounds public immutable ledger;
    /// @notice The validators (and their quorum) that attest checkpoints.
    IValidatorSet public immutable validators;
    /// @notice The registry suspensions are applied to and Active status is read from.
    address public immutable registry;
    /// @notice Number of checkpoints proposed; ids are 1..checkpointCount.
    uint256 public checkpointCount;

    mapping(uint256 => Checkpoint) private _checkpoints;
    /// @dev Per checkpoint and validator: 0 no vote, VOTE_ATTEST, VOTE_DISPUTE or VOTE_DISCOUNTED.
    mapping(uint256 => mapping(address => uint8)) private _voted;
    mapping(uint256 => uint256) private _lastProposed;
    mapping(uint256 => uint256) private _latestFinalized;

    /// @notice Only the task's owner (the coordinator that commits its rounds) proposes its checkpoints.
    error NotTaskOwner(uint256 task, address caller);
    /// @notice No checkpoint has this id.
    error UnknownCheckpoint(uint256 id);
    /// @notice Only a validator of the quorum may attest or dispute.
    error NotValidator(address account);
    /// @notice This validator already attested or disputed the checkpoint.
    error AlreadyVoted(uint256 id, address validator);
    /// @notice The attested root is not the proposed one: the validator computed another checkpoint.
    error RootMismatch(uint256 id, bytes32 proposed, bytes32 attested);
    /// @notice A checkpoint must fold at least one round past its base, up to a commitment-mode round.
    error BadRange(uint256 task, uint256 throughRound, uint256 baseThroughRound);
    /// @notice The round was not committed in commitment mode.
    error NotCommitmentRound(uint256 task, uint256 round);
    /// @notice A checkpoint needs a root and at least one leaf.
    error EmptyCheckpoint();
    /// @notice A quorum disputed this checkpoint (or its base): it can never take effect.
    error CheckpointRejected(uint256 id);
    /// @notice A newer checkpoint of the task is already finalized.
    error Superseded(uint256 id, uint256 latest);
    /// @notice The task has no finalized checkpoint.
    error NoFinalizedCheckpoint(uint256 task);
    /// @notice The proof does not lead from the leaf to the task's latest finalized checkpoint.
    error InvalidProof(uint256 task, address node);
    /// @notice A dispute reason longer than MAX_REASON_BYTES.
    error ReasonTooLong(uint256 length);
    /// @notice The checkpoint's base is not finalized (yet): a checkpoint finalizes only on a finalized base.
    error BaseNotFinalized(uint256 id, uint256 base);
    /// @notice The registrar re-approved the node at `activatedAt`, after the rounds this checkpoint
    ///         folded: its suspension predates the registrar's decision.
    error ReinstatedSince(uint256 id, address node, uint256 activatedAt);
    /// @notice Only votes of accounts that no longer hold VALIDATOR_ROLE can be discounted.
    error StillValidator(address validator);
    /// @notice The account has no counted vote on this checkpoint.
    error NoVote(uint256 id, address validator);
    /// @notice The checkpoint is already finalized or rejected: its votes stand.
    error AlreadyResolved(uint256 id);

    /// @notice A checkpoint was proposed: `root` of the leaves folded from `base` through `throughRound`.
    event CheckpointProposed(
        uint256 indexed id, uint256 indexed task, uint256 throughRound, uint256 base, bytes32 root, uint256 leafCount
    );
    /// @notice A validator re-computed a checkpoint and found the same root.
    event CheckpointAttested(uint256 indexed id, address indexed validator);
    /// @notice A validator re-computed a checkpoint and found it wrong; `node` names a differing leaf
    ///         (zero for the checkpoint as a whole).
    event CheckpointDisputed(uint256 indexed id, address indexed validator, address node, string reason);
    /// @notice A checkpoint reached the quorum: it is the task's reputation from now on.
    event CheckpointFinalized(uint256 indexed id, uint256 indexed task, bytes32 root);
    /// @notice A checkpoint's disputes reached the quorum: it never takes effect.
    event CheckpointRejectedByQuorum(uint256 indexed id, uint256 indexed task);
    /// @notice After a rejection, the task's next proposal builds on `base` (its latest finalized
    ///         checkpoint, or 0 for none).
    event ProposalBaseReset(uint256 indexed task, uint256 base);
    /// @notice The vote of an account that lost VALIDATOR_ROLE was taken out of an unresolved checkpoint.
    event VoteDiscounted(uint256 indexed id, address indexed validator, bool attestation);
    /// @notice A suspension recorded in a finalized checkpoint was applied to the registry.
    event SuspensionApplied(uint256 indexed id, address indexed node, uint256 reputation);

    /// @param admin Receives DEFAULT_ADMIN_ROLE (grants COORDINATOR_ROLE).
    /// @param ledger_ The ModelLedger.
    /// @param validators_ The ValidationQuorum.
    /// @param registry_ The NodeRegistry (grants this contract SUSPENDER_ROLE at its creation).
    /// @param coordinator Receives COORDINATOR_ROLE at creation (zero: none yet; the admin grants it).
    constructor(
        address admin,
        ILedgerRounds ledger_,
        IValidatorSet validators_,
        address registry_,
        address coordinator
    ) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        if (coordinator != address(0)) _grantRole(COORDINATOR_ROLE, coordinator);
        ledger = ledger_;
        validators = validators_;
        registry = registry_;
    }

    /// @notice Propose the task's reputation after folding its rounds from its last proposed
    ///         checkpoint (the base) through `throughRound`. Only the task's owner may propose.
    /// @param task Task id.
    /// @param throughRound Last folded round; a commitment-mode round after the base's.
    /// @param root Merkle root of the (node, reputation, active) leaves.
    /// @param leafCount Number of leaves.
    /// @return id The checkpoint's id.
    function propose(uint256 task, uint256 throughRound, bytes32 root, uint32 leafCount)
        external
        onlyRole(COORDINATOR_ROLE)
        returns (uint256 id)
    {
        if (root == bytes32(0) || leafCount == 0) revert EmptyCheckpoint();
        if (ledger.taskOwner(task) != msg.sender) revert NotTaskOwner(task, msg.sender);
        uint256 base = _lastProposed[task];
        uint256 baseRound = base == 0 ? 0 : _checkpoints[base].throughRound;
        if (base != 0 && throughRound <= baseRound) revert BadRange(task, throughRound, baseRound);
        if (ledger.outcomesRoot(task, throughRound) == bytes32(0)) revert NotCommitmentRound(task, throughRound);
        id = ++checkpointCount;
        _checkpoints[id] = Checkpoint(root, uint64(task), uint64(throughRound), uint64(base), leafCount, 0, 0, false, false);
        _lastProposed[task] = id;
        emit CheckpointProposed(id, task, throughRound, base, root, leafCount);
    }

    /// @notice Attest a checkpoint: the validator folded the published outcome leaves from the base's
    ///         leaves and got `root`. Refused while its base is not finalized (BaseNotFinalized: vote
    ///         again once it is), so a checkpoint never finalizes on an unresolved or rejected base. At
    ///         the quorum the checkpoint becomes the task's latest, unless it, or its base, was
    ///         rejected, or a newer one (or one folding as far) is already finalized.
    /// @param id Checkpoint id.
    /// @param root The root the validator computed; must equal the proposed root.
    function attest(uint256 id, bytes32 root) external {
        Checkpoint storage c = _vote(id, VOTE_ATTEST);
        if (c.root != root) revert RootMismatch(id, c.root, root);
        uint256 base = c.base;
        if (c.rejected || (base != 0 && _checkpoints[base].rejected)) revert CheckpointRejected(id);
        if (base != 0 && !_checkpoints[base].finalized) revert BaseNotFinalized(id, base);
        uint256 latest = _latestFinalized[c.task];
        if (id < latest || (id > latest && latest != 0 && c.throughRound <= _checkpoints[latest].throughRound)) {
            revert Superseded(id, latest);
        }
        c.attestations += 1;
        emit CheckpointAttested(id, msg.sender);
        if (!c.finalized && c.attestations >= validators.quorum()) {
            c.finalized = true;
            _latestFinalized[c.task] = id;
            emit CheckpointFinalized(id, c.task, c.root);
        }
    }

    /// @notice Dispute a checkpoint the validator could not re-compute (another root, a leaf set that
    ///         does not match its round's root, a rejected base). At the quorum it is rejected for good,
    ///         and if it (or a checkpoint built on it) is the task's last proposed one, the task's next
    ///         proposal builds on its latest finalized checkpoint (ProposalBaseReset).
    /// @param id Checkpoint id.
    /// @param node A node whose leaf differs, or zero.
    /// @param reason What differed, at most MAX_REASON_BYTES bytes.
    function dispute(uint256 id, address node, string calldata reason) external {
        if (bytes(reason).length > MAX_REASON_BYTES) revert ReasonTooLong(bytes(reason).length);
        Checkpoint storage c = _vote(id, VOTE_DISPUTE);
        c.disputes += 1;
        emit CheckpointDisputed(id, msg.sender, node, reason);
        if (!c.rejected && !c.finalized && c.disputes >= validators.quorum()) {
            c.rejected = true;
            emit CheckpointRejectedByQuorum(id, c.task);
            // Ids grow with proposals and each proposal builds on the last one: a last proposed id at or
            // after the rejected one may descend from it, so the next proposal starts from finality.
            if (_lastProposed[c.task] >= id) {
                uint256 base = _latestFinalized[c.task];
                _lastProposed[c.task] = base;
                emit ProposalBaseReset(c.task, base);
            }
        }
    }

    /// @notice Take out of an unresolved checkpoint the vote of an account that no longer holds
    ///         VALIDATOR_ROLE. Anyone may call it: O(1), no loop over validators. A vote that already
    ///         finalized or rejected the checkpoint stands (discount before the quorum is reached).
    /// @param id Checkpoint id.
    /// @param validator The former validator.
    function discountVote(uint256 id, address validator) external {
        if (validators.isValidator(validator)) revert StillValidator(validator);
        Checkpoint storage c = _checkpoints[id];
        uint8 vote = _voted[id][validator];
        if (vote != VOTE_ATTEST && vote != VOTE_DISPUTE) revert NoVote(id, validator);
        if (c.finalized || c.rejected) revert AlreadyResolved(id);
        _voted[id][validator] = VOTE_DISCOUNTED;
        if (vote == VOTE_ATTEST) c.attestations -= 1;
        else c.disputes -= 1;
        emit VoteDiscounted(id, validator, vote == VOTE_ATTEST);
    }

    /// @notice Apply a suspension that the task's latest finalized checkpoint records: the node's leaf
    ///         says (node, reputation, false). Anyone may call it; the registry suspends the node.
    ///         Refused (ReinstatedSince) if the registrar re-approved the node in or after the block of
    ///         the checkpoint's last folded round: the fold reads the registry as of the block before
    ///         each round's commit, so this checkpoint could not see that approval, and the next
    ///         checkpoint folds it (the node restarts at the starting reputation, Active).
    /// @param task Task id.
    /// @param node The suspended node.
    /// @param reputation Its reputation in the checkpoint (SCALE units).
    /// @param proof Sibling hashes from its leaf to the checkpoint's root.
    function applySuspension(uint256 task, address node, uint256 reputation, bytes32[] calldata proof) external {
        uint256 id = _requireLeaf(task, node, reputation, false, proof);
        uint256 since = INodeStatus(registry).activatedAt(node);
        if (since >= ledger.getRound(task, _checkpoints[id].throughRound).blockNumber) {
            revert ReinstatedSince(id, node, since);
        }
        emit SuspensionApplied(id, node, reputation);
        if (INodeStatus(registry).isActive(node)) ISuspender(registry).suspend(node);
    }

    /// @notice Whether a node may take part: Active in the registry and Active, with `reputation`, in
    ///         the task's latest finalized checkpoint. Reverts InvalidProof if the leaf is not in it
    ///         (a proof made for another or an older checkpoint) and NoFinalizedCheckpoint if none.
    /// @param task Task id.
    /// @param node The node.
    /// @param reputation Its reputation in the checkpoint (SCALE units).
    /// @param proof Sibling hashes from its leaf to the checkpoint's root.
    /// @return True if both say Active.
    function isActive(uint256 task, address node, uint256 reputation, bytes32[] calldata proof)
        external
        view
        returns (bool)
    {
        _requireLeaf(task, node, reputation, true, proof);
        return INodeStatus(registry).isActive(node);
    }

    /// @notice Whether (node, reputation, active) is a leaf of the task's latest finalized checkpoint.
    /// @param task Task id.
    /// @param node The node.
    /// @param reputation Reputation in SCALE units.
    /// @param active Status in the checkpoint.
    /// @param proof Sibling hashes from the leaf to the root.
    /// @return True if the proof leads to the root; reverts NoFinalizedCheckpoint if there is none.
    function verify(uint256 task, address node, uint256 reputation, bool active, bytes32[] calldata proof)
        public
        view
        returns (bool)
    {
        bytes32 root = _checkpoints[_latestId(task)].root;
        return MerkleProof.verifyCalldata(proof, root, _leaf(node, reputation, active));
    }

    /// @notice One checkpoint's record.
    /// @param id Checkpoint id.
    /// @return The checkpoint.
    function getCheckpoint(uint256 id) public view returns (Checkpoint memory) {
        if (id == 0 || id > checkpointCount) revert UnknownCheckpoint(id);
        return _checkpoints[id];
    }

    /// @notice The task's latest finalized checkpoint.
    /// @param task Task id.
    /// @return id Its id (reverts NoFinalizedCheckpoint if none).
    /// @return root Its root.
    function latest(uint256 task) external view returns (uint256 id, bytes32 root) {
        id = _latestId(task);
        root = _checkpoints[id].root;
    }

    /// @notice The task's last proposed checkpoint (the base of its next one), or 0.
    /// @param task Task id.
    /// @return The id.
    function lastProposed(uint256 task) external view returns (uint256) {
        return _lastProposed[task];
    }

    /// @notice Whether a validator attested or disputed a checkpoint (a discounted vote included).
    /// @param id Checkpoint id.
    /// @param validator The validator.
    /// @return True if it voted.
    function hasVoted(uint256 id, address validator) external view returns (bool) {
        return _voted[id][validator] != 0;
    }

    /// @dev Record the caller's one vote (`kind`) on checkpoint `id`; reverts for non-validators and repeats.
    function _vote(uint256 id, uint8 kind) private returns (Checkpoint storage c) {
        if (!validators.isValidator(msg.sender)) revert NotValidator(msg.sender);
        getCheckpoint(id);
        if (_voted[id][msg.sender] != 0) revert AlreadyVoted(id, msg.sender);
        _voted[id][msg.sender] = kind;
        c = _checkpoints[id];
    }

    /// @dev The latest finalized checkpoint's id if the leaf is in it, else revert InvalidProof.
    function _requireLeaf(uint256 task, address node, uint256 reputation, bool active, bytes32[] calldata proof)
        private
        view
        returns (uint256 id)
    {
        id = _latestId(task);
        if (!MerkleProof.verifyCalldata(proof, _checkpoints[id].root, _leaf(node, reputation, active))) {
            revert InvalidProof(task, node);
        }
    }

    /// @dev The task's latest finalized checkpoint id; reverts NoFinalizedCheckpoint if none.
    function _latestId(uint256 task) private view returns (uint256 id) {
        id = _latestFinalized[task];
        if (id == 0) revert NoFinalizedCheckpoint(task);
    }

    /// @dev StandardMerkleTree leaf of (address, uint256, bool).
    function _leaf(address node, uint256 reputation, bool active) private pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(node, reputation, active))));
    }
}

// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {ILedgerRounds} from "./interfaces/ILedgerRounds.sol";
import {IReputation} from "./interfaces/IReputation.sol";
import {IRoundStatus} from "./interfaces/IRoundStatus.sol";

/// @title ModelLedger
/// @notice Tamper-proof history of model versions per training task: every round's model hash, where
///         the blob is stored, its parent, who took part and each participant's contribution score.
/// @dev One concern: model versions and contributions. Per round it stores two slots; participants
///      and scores go to events (ContributionRecorded) and to Reputation, so gas grows only by a few
///      thousand per participant. "Participants must be active" is enforced by Reputation, which
///      holds an exact mirror of the registry's Active status (see Reputation). A blob URI is stored
///      only when it differs from the task's default location `blobBase || hex(modelHash)`.
///      Implements ILedgerRounds (read by ValidationQuorum); its `Round` is ILedgerRounds.Round.
///      A verified round also commits the Merkle root of its accepted updates (one leaf per update:
///      node, update hash, weight, score; OpenZeppelin StandardMerkleTree encoding), one more slot
///      whatever the number of participants; a node whose signed update was left out can say so here.
///      A commitment-mode round (commitOutcomes) stores only the model and the root of its outcome
///      leaves: flat gas for any number of participants.
///      A task recovers from a disputed round by `rebase`: its next round builds on the newest
///      finalized model instead of the disputed one (ValidationQuorum says which is which).
///      Charges (missed, penalized) reach a node only from a task it is a member of (a scored
///      participant of one of its rounds: isMember), or from any task while it is a member of none
///      (chargeable): a task's coordinator cannot reach nodes that work in other tasks, and a new node
///      that misbehaves in its first round is still charged. Lists are sorted and disjoint, checked in O(n).
contract ModelLedger is AccessControl, ILedgerRounds {
    /// @notice Role of the federated-learning coordinator, the only account that creates tasks and
    ///         commits rounds.
    bytes32 public constant COORDINATOR_ROLE = keccak256("COORDINATOR_ROLE");

    /// @notice How a task's rounds are committed, fixed when the task is created so that validators,
    ///         auditors and nodes read it from the chain and a coordinator cannot switch a task to a
    ///         weaker mode mid-run: Plain (commitRound: model and scores), Verified (commitVerifiedRound:
    ///         plus the root of the node-signed updates, re-derived by validators; its round 0, the
    ///         initial model, goes through commitRound), Commitment (commitOutcomes: the root of the
    ///         outcome leaves, reputation checkpointed off-chain).
    enum LedgerMode {
        Plain,
        Verified,
        Commitment
    }

    /// @notice A training task. `mode` shares the first slot with owner and nextRound (no extra slot).
    ///         `rulesHash` is the keccak-256 of the task's rules document (fl_chain/protocol/task_rules.py:
    ///         scoring method, claim cap, clip and step ratios), fixed for the task's life: a verified
    ///         round's manifest must declare exactly these rules or validators dispute it.
    struct Task {
        address owner;
        uint64 nextRound;
        LedgerMode mode;
        bytes32 configHash;
        bytes32 rulesHash;
        string blobBase;
    }

    /// @notice Reputation contract fed with every round's scores, missed and penalized nodes (a verified
    ///         round's missed and penalized nodes once its finality stands: settleCharges).
    IReputation public immutable reputation;
    /// @notice The validator quorum whose verdicts let a task rebase past a disputed round.
    IRoundStatus public immutable quorum;
    /// @notice Seconds after a round's commit during which a node may complain that its update was left
    ///         out (complainOmitted) and a finalized round may still be disputed (ValidationQuorum).
    ///         After `complaintDeadline`, finality stands.
    uint256 public immutable complaintWindow;
    /// @notice Number of tasks created; task ids are 1..taskCount.
    uint256 public taskCount;

    mapping(uint256 => Task) private _tasks;
    mapping(uint256 => mapping(uint256 => Round)) private _rounds;
    mapping(uint256 => mapping(uint256 => string)) private _uriOverride;
    mapping(uint256 => mapping(uint256 => bytes32)) private _updatesRoot;
    mapping(uint256 => mapping(uint256 => bytes32)) private _outcomesRoot;
    mapping(uint256 => mapping(uint256 => mapping(address => bool))) private _complained;
    mapping(uint256 => mapping(uint256 => bytes32)) private _rebasedParent;
    /// @dev Task members: nodes that were a scored participant of at least one of the task's rounds.
    mapping(uint256 => mapping(address => bool)) private _member;
    /// @dev The first task a node became a member of (0: none yet). Written once per node.
    mapping(address => uint256) private _firstTask;
    /// @dev A verified round's charges held until its finality stands: keccak256(abi.encode(missed,
    ///      penalized)) as committed, zero once settled (or if it charged nobody).
    mapping(uint256 => mapping(uint256 => bytes32)) private _pendingCharges;

    /// @notice Domain of a node's signature on its update (fl_chain/chain/update_signing.py).
    bytes32 public constant UPDATE_DOMAIN = keccak256("flchain.update.v1");
    /// @notice Domain of a coordinator's ticket sampling a node for a round (see ticketDigest).
    bytes32 public constant TICKET_DOMAIN = keccak256("flchain.ticket.v1");

    /// @notice No task has this id.
    error UnknownTask(uint256 task);
    /// @notice A verified task needs the hash of its rules (what validators re-derive its rounds with).
    error EmptyRulesHash();
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
    /// @notice A verified round needs the root of its accepted updates.
    error EmptyUpdatesRoot();
    /// @notice The round was not committed as a verified round (it has no updates root).
    error NotVerified(uint256 task, uint256 round);
    /// @notice A commitment-mode round needs the root of its outcome leaves.
    error EmptyOutcomesRoot();
    /// @notice The round was not committed in commitment mode (it has no outcomes root).
    error NotCommitmentRound(uint256 task, uint256 round);
    /// @notice A complaint is sent by the node whose signature it carries.
    error NotSigner(address sender, address signer);
    /// @notice Only an Active node may complain.
    error NotEligible(address node);
    /// @notice A node complains about a round at most once.
    error AlreadyComplained(uint256 task, uint256 round, address node);
    /// @notice The complaint's ticket is not the task owner's signature sampling this node for the round.
    error NotSampled(uint256 task, uint256 round, address node);
    /// @notice The commit function does not match the task's ledger mode (see LedgerMode).
    error WrongMode(uint256 task, LedgerMode mode);
    /// @notice A rebase needs the task's newest round to be disputed by the validator quorum.
    error NotDisputed(uint256 task, uint256 round);
    /// @notice A rebase builds on an earlier round the validator quorum finalized.
    error NotFinalized(uint256 task, uint256 round);
    /// @notice The round's complaint window closed at `deadline` (see complaintDeadline).
    error ComplaintWindowClosed(uint256 task, uint256 round, uint256 deadline);
    /// @notice `missed` must be sorted by address, strictly ascending (this also forbids duplicates).
    error MissedNotSorted(uint256 index);
    /// @notice `penalized` must be sorted by address, strictly ascending (this also forbids duplicates).
    error PenalizedNotSorted(uint256 index);
    /// @notice A node appears in two of a commit's lists (participants, missed, penalized).
    error ListedTwice(address node);
    /// @notice `joined` must be sorted by address, strictly ascending.
    error JoinedNotSorted(uint256 index);
    /// @notice A node in `joined` is not a participant of the round.
    error NotParticipant(address node);
    /// @notice A node missed or penalized in a task must be a member of it (a scored participant of one of
    ///         its rounds) unless it is a member of no task yet: a task's coordinator cannot reach the
    ///         standing of nodes that work in other tasks.
    error NotTaskMember(uint256 task, address node);
    /// @notice The round holds no unsettled charges (none recorded, or already settled).
    error NothingToSettle(uint256 task, uint256 round);
    /// @notice The lists given are not the ones the round's commit recorded (ChargesRecorded).
    error WrongCharges(uint256 task, uint256 round);
    /// @notice The round's finality does not stand yet: not finalized by the quorum, disputed, or still
    ///         inside its complaint window (until `deadline`).
    error FinalityNotStanding(uint256 task, uint256 round, uint256 deadline);

    /// @notice A task was created.
    event TaskCreated(
        uint256 indexed task,
        address indexed owner,
        bytes32 configHash,
        string blobBase,
        LedgerMode mode,
        bytes32 rulesHash
    );
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
    /// @notice A verified round's accepted updates: the Merkle root of their leaves.
    event UpdatesCommitted(uint256 indexed task, uint256 indexed round, bytes32 updatesRoot);
    /// @notice A commitment-mode round's outcomes: the Merkle root of its leaves (node, score, outcome)
    ///         and how many there are. Reputation is folded from them off-chain and checkpointed.
    event OutcomesCommitted(uint256 indexed task, uint256 indexed round, bytes32 outcomesRoot, uint256 leafCount);
    /// @notice The task's round `round` will build on round `fromRound`'s model (`parentHash`), the newest
    ///         finalized one, instead of the disputed round before it.
    event TaskRebased(uint256 indexed task, uint256 indexed round, uint256 fromRound, bytes32 parentHash);
    /// @notice A node became a member of a task: its first round as a scored participant of it.
    event TaskMember(uint256 indexed task, address indexed node);
    /// @notice The nodes a round's commit charged (missed, penalized) as it listed them; emitted only when
    ///         a list is non-empty. A Plain round applies them at once, a Verified round once it settles.
    event ChargesRecorded(uint256 indexed task, uint256 indexed round, address[] missed, address[] penalized);
    /// @notice A verified round's charges went to Reputation: its finality stands (settleCharges).
    event ChargesSettled(uint256 indexed task, uint256 indexed round);
    /// @notice A node says its signed update for a verified round was left out of the commitment.
    event UpdateOmitted(
        uint256 indexed task, uint256 indexed round, address indexed node, bytes32 updateHash, uint256 weight
    );

    /// @param admin Receives DEFAULT_ADMIN_ROLE.
    /// @param reputation_ Reputation contract fed with scores (and checking participants are active).
    /// @param coordinator Receives COORDINATOR_ROLE at creation (zero: none yet; the admin grants it).
    /// @param quorum_ The ValidationQuorum (may not have code yet: its CREATE address).
    /// @param complaintWindow_ Seconds after a round's commit that complaints and disputes of a
    ///        finalized round are accepted (see complaintWindow).
    constructor(
        address admin,
        IReputation reputation_,
        address coordinator,
        IRoundStatus quorum_,
        uint256 complaintWindow_
    ) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        if (coordinator != address(0)) _grantRole(COORDINATOR_ROLE, coordinator);
        reputation = reputation_;
        quorum = quorum_;
        complaintWindow = complaintWindow_;
    }

    /// @notice Create a training task owned by the caller.
    /// @param configHash Hash of the task's configuration (model, data, strategy).
    /// @param blobBase Default blob location prefix; a round's blob is at blobBase followed by the
    ///        64 lowercase hex digits of its model hash.
    /// @param mode How its rounds are committed (Plain, Verified or Commitment), fixed for its life.
    /// @param rulesHash keccak-256 of the task's rules document, fixed for its life (required, non-zero,
    ///        for a Verified task; reverts EmptyRulesHash otherwise).
    /// @return task The new task's id.
    function createTask(bytes32 configHash, string calldata blobBase, LedgerMode mode, bytes32 rulesHash)
        external
        onlyRole(COORDINATOR_ROLE)
        returns (uint256 task)
    {
        if (mode == LedgerMode.Verified && rulesHash == bytes32(0)) revert EmptyRulesHash();
        task = ++taskCount;
        _tasks[task] = Task(msg.sender, 0, mode, configHash, rulesHash, blobBase);
        emit TaskCreated(task, msg.sender, configHash, blobBase, mode, rulesHash);
    }

    /// @notice Change a task's default blob location (for rounds committed from now on and before).
    /// @param task Task id.
    /// @param blobBase New location prefix.
    function setBlobBase(uint256 task, string calldata blobBase) external onlyRole(COORDINATOR_ROLE) {
        Task storage t = _ownedTask(task);
        t.blobBase = blobBase;
        emit TaskStoreChanged(task, blobBase);
    }

    /// @notice Let the task's next round build on an earlier finalized model because the validator quorum
    ///         disputed its newest round: without it, every later round would descend from the
    ///         disputed model and nodes that train only from finalized models would stop for good.
    ///         Round numbers go on; only the next round's parent changes (RoundCommitted shows it).
    /// @param task Task id (owned by the caller).
    /// @param fromRound A round before the disputed one that the quorum finalized (normally the newest).
    function rebase(uint256 task, uint256 fromRound) external onlyRole(COORDINATOR_ROLE) {
        Task storage t = _ownedTask(task);
        uint256 next = t.nextRound;
        if (next == 0 || !quorum.isDisputed(task, next - 1)) revert NotDisputed(task, next == 0 ? 0 : next - 1);
        if (fromRound + 1 >= next || !quorum.isFinalized(task, fromRound)) revert NotFinalized(task, fromRound);
        bytes32 parent = _rounds[task][fromRound].modelHash;
        _rebasedParent[task][next] = parent;
        emit TaskRebased(task, next, fromRound, parent);
    }

    /// @notice The model hash a round may build on instead of its predecessor's (zero if none): set by
    ///         `rebase` for that round only.
    /// @param task Task id.
    /// @param round Round number.
    /// @return The rebased parent hash, or zero.
    function rebasedParent(uint256 task, uint256 round) external view returns (bytes32) {
        return _rebasedParent[task][round];
    }

    /// @notice Commit one round: the aggregated model and every participant's score.
    /// @param task Task id.
    /// @param round Round number; must be the task's next round (0 for the initial model).
    /// @param modelHash Canonical hash of the model (see README, "model hash").
    /// @param uri Where the blob is, or empty if it is at the task's default location.
    /// @param parentHash Model hash of the previous round (zero for round 0).
    /// @param participants Participants, sorted ascending by address; all must be active.
    /// @param scores Contribution scores in Reputation.SCALE units, same order.
    /// @param missed Nodes selected for the round that did not answer in time (their reputation decays);
    ///        sorted strictly ascending, chargeable by the task (see chargeable), not participants.
    /// @param penalized Nodes whose reply was rejected as malformed or an outlier (they are penalized);
    ///        sorted strictly ascending, chargeable by the task, neither participants nor missed.
    /// @param joined Participants that become members of the task with this round (sorted strictly
    ///        ascending; the coordinator lists those that are not members yet, so a round of members
    ///        pays nothing for membership).
    function commitRound(
        uint256 task,
        uint256 round,
        bytes32 modelHash,
        string calldata uri,
        bytes32 parentHash,
        address[] calldata participants,
        uint256[] calldata scores,
        address[] calldata missed,
        address[] calldata penalized,
        address[] calldata joined
    ) external onlyRole(COORDINATOR_ROLE) {
        _commit(task, round, modelHash, uri, parentHash, participants, scores, missed, penalized, joined, LedgerMode.Plain);
    }

    /// @notice Commit one verified round: as `commitRound`, plus the Merkle root of the round's accepted
    ///         updates, which validators re-derive the model and the scores from.
    /// @param task Task id.
    /// @param round Round number; must be the task's next round.
    /// @param modelHash Canonical hash of the aggregated model.
    /// @param uri Where the blob is, or empty if it is at the task's default location.
    /// @param parentHash Model hash of the previous round.
    /// @param participants Participants, sorted ascending by address; all must be active.
    /// @param scores Contribution scores in Reputation.SCALE units, same order.
    /// @param missed Nodes selected for the round that did not answer in time (rules as in commitRound).
    /// @param penalized Nodes whose reply was rejected (rules as in commitRound); validators check that
    ///        each is disclosed as excluded in the round's manifest and that no missed node is in it.
    /// @param joined Participants that become members of the task with this round (as in commitRound).
    /// @param updatesRoot Root of the leaves (node, update hash, weight, score) of the accepted updates.
    function commitVerifiedRound(
        uint256 task,
        uint256 round,
        bytes32 modelHash,
        string calldata uri,
        bytes32 parentHash,
        address[] calldata participants,
        uint256[] calldata scores,
        address[] calldata missed,
        address[] calldata penalized,
        address[] calldata joined,
        bytes32 updatesRoot
    ) external onlyRole(COORDINATOR_ROLE) {
        if (updatesRoot == bytes32(0)) revert EmptyUpdatesRoot();
        _commit(
            task, round, modelHash, uri, parentHash, participants, scores, missed, penalized, joined, LedgerMode.Verified
        );
        _updatesRoot[task][round] = updatesRoot;
        emit UpdatesCommitted(task, round, updatesRoot);
    }

    /// @notice Commit one round in commitment mode: the model, its parent and the Merkle root of the
    ///         round's outcome leaves (node, score, outcome: 0 scored, 1 missed, 2 penalized), whose
    ///         blob is stored by root beside the model. Gas does not depend on the number of
    ///         participants: nothing is written per node, and Reputation is not called (reputation is
    ///         folded off-chain from the leaves and checkpointed in ReputationCheckpoints).
    /// @param task Task id.
    /// @param round Round number; must be the task's next round.
    /// @param modelHash Canonical hash of the aggregated model.
    /// @param uri Where the blob is, or empty if it is at the task's default location.
    /// @param parentHash Model hash of the previous round.
    /// @param outcomesRoot Root of the outcome leaves (OpenZeppelin StandardMerkleTree encoding).
    /// @param leafCount Number of leaves (recorded as the round's participant count).
    function commitOutcomes(
        uint256 task,
        uint256 round,
        bytes32 modelHash,
        string calldata uri,
        bytes32 parentHash,
        bytes32 outcomesRoot,
        uint32 leafCount
    ) external onlyRole(COORDINATOR_ROLE) {
        if (outcomesRoot == bytes32(0)) revert EmptyOutcomesRoot();
        _checkSequence(task, round, modelHash, parentHash, LedgerMode.Commitment);
        _tasks[task].nextRound = uint64(round + 1);
        _rounds[task][round] = Round(modelHash, uint64(block.number), uint64(block.timestamp), leafCount);
        if (bytes(uri).length != 0) _uriOverride[task][round] = uri;
        _outcomesRoot[task][round] = outcomesRoot;
        emit RoundCommitted(task, round, modelHash, parentHash, uri, leafCount);
        emit OutcomesCommitted(task, round, outcomesRoot, leafCount);
    }

    /// @inheritdoc ILedgerRounds
    function taskOwner(uint256 task) external view override returns (address) {
        return _tasks[task].owner;
    }

    /// @inheritdoc ILedgerRounds
    function outcomesRoot(uint256 task, uint256 round) external view override returns (bytes32) {
        getRound(task, round);
        return _outcomesRoot[task][round];
    }

    /// @notice Whether an outcome leaf is in a commitment-mode round's root.
    /// @param task Task id.
    /// @param round Round number; reverts NotCommitmentRound if it has no outcomes root.
    /// @param node The node.
    /// @param score Its score (SCALE units; zero for a missed or penalized node).
    /// @param outcome 0 scored, 1 missed, 2 penalized.
    /// @param proof Sibling hashes from the leaf to the root.
    /// @return True if the proof leads to the committed root.
    function isCommittedOutcome(
        uint256 task,
        uint256 round,
        address node,
        uint256 score,
        uint8 outcome,
        bytes32[] calldata proof
    ) external view returns (bool) {
        bytes32 root = _outcomesRoot[task][round];
        if (root == bytes32(0)) revert NotCommitmentRound(task, round);
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(node, score, outcome))));
        return MerkleProof.verifyCalldata(proof, root, leaf);
    }

    /// @inheritdoc ILedgerRounds
    function updatesRoot(uint256 task, uint256 round) external view override returns (bytes32) {
        getRound(task, round);
        return _updatesRoot[task][round];
    }

    /// @notice Whether a leaf is in a verified round's commitment.
    /// @param task Task id.
    /// @param round Round number; reverts NotVerified if it has no updates root.
    /// @param node The update's sender.
    /// @param updateHash Hash of the update's blob.
    /// @param weight The weight it was aggregated with.
    /// @param score The score it was given.
    /// @param proof Sibling hashes from the leaf to the root.
    /// @return True if the proof leads to the committed root.
    function isCommittedUpdate(
        uint256 task,
        uint256 round,
        address node,
        bytes32 updateHash,
        uint256 weight,
        uint256 score,
        bytes32[] calldata proof
    ) external view returns (bool) {
        bytes32 root = _updatesRoot[task][round];
        if (root == bytes32(0)) revert NotVerified(task, round);
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(node, updateHash, weight, score))));
        return MerkleProof.verifyCalldata(proof, root, leaf);
    }

    /// @notice The digest a node signs for its update (EIP-191 personal message of these 32 bytes).
    /// @param task Task id.
    /// @param round Round number.
    /// @param updateHash Hash of the update's blob.
    /// @param weight The weight the node claims.
    /// @return keccak256(abi.encode(UPDATE_DOMAIN, chain id, this ledger, task, round, updateHash, weight)).
    function updateDigest(uint256 task, uint256 round, bytes32 updateHash, uint256 weight)
        public
        view
        returns (bytes32)
    {
        return keccak256(abi.encode(UPDATE_DOMAIN, block.chainid, address(this), task, round, updateHash, weight));
    }

    /// @notice The digest a coordinator signs to sample a node for a round (its ticket): proof that the
    ///         node was asked for an update, so that only sampled nodes can complain of omission.
    /// @param task Task id.
    /// @param round Round number.
    /// @param node The sampled node.
    /// @return keccak256(abi.encode(TICKET_DOMAIN, chain id, this ledger, task, round, node)).
    function ticketDigest(uint256 task, uint256 round, address node) public view returns (bytes32) {
        return keccak256(abi.encode(TICKET_DOMAIN, block.chainid, address(this), task, round, node));
    }

    /// @inheritdoc ILedgerRounds
    function complaintDeadline(uint256 task, uint256 round) public view override returns (uint256) {
        return uint256(getRound(task, round).timestamp) + complaintWindow;
    }

    /// @notice A node's complaint that its signed update was left out of a verified round. The
    ///         contract checks the complaint window (until complaintDeadline), the node's signature,
    ///         that the task's owner sampled it for the round (its ticket) and that it is eligible;
    ///         whether the update really is missing is for the round's disclosed leaves to show
    ///         (validators, `flchain audit`).
    /// @param task Task id.
    /// @param round A verified round.
    /// @param updateHash The update the node signed.
    /// @param weight The weight it signed.
    /// @param signature The node's signature over `updateDigest`.
    /// @param ticket The task owner's signature over `ticketDigest(task, round, node)`.
    function complainOmitted(
        uint256 task,
        uint256 round,
        bytes32 updateHash,
        uint256 weight,
        bytes calldata signature,
        bytes calldata ticket
    ) external {
        if (_updatesRoot[task][round] == bytes32(0)) revert NotVerified(task, round);
        uint256 deadline = uint256(_rounds[task][round].timestamp) + complaintWindow;
        if (block.timestamp > deadline) revert ComplaintWindowClosed(task, round, deadline);
        address signer = ECDSA.recover(_ethSigned(updateDigest(task, round, updateHash, weight)), signature);
        if (signer != msg.sender) revert NotSigner(msg.sender, signer);
        address sampler = ECDSA.recover(_ethSigned(ticketDigest(task, round, signer)), ticket);
        if (sampler != _tasks[task].owner) revert NotSampled(task, round, signer);
        if (!reputation.isEligible(signer)) revert NotEligible(signer);
        if (_complained[task][round][signer]) revert AlreadyComplained(task, round, signer);
        _complained[task][round][signer] = true;
        emit UpdateOmitted(task, round, signer, updateHash, weight);
    }

    // ---- Posted claims: a node proves on-chain, before its round commits, that it sent its update ----

    /// @notice A claim can be posted only for the task's next round (not yet committed, and not round 0,
    ///         the initial model): a claim posted later proves nothing about what the commit omitted.
    error ClaimNotOnTime(uint256 task, uint256 expected, uint256 given);

    /// @notice A sampled node posted its claim on its update for a verified round before the round was
    ///         committed: the round's manifest must disclose that node, and the commit must not record it
    ///         as missed (checked by validators and `flchain audit`).
    event ClaimPosted(
        uint256 indexed task, uint256 indexed round, address indexed node, bytes32 updateHash, uint256 weight
    );

    /// @notice Post the caller's claim on its update for the task's next (uncommitted) round: the update
    ///         hash and weight it signed and sends the coordinator. The transaction is the node's own
    ///         signature, and its block shows it came before the commit, so a coordinator that later
    ///         records the node as missed, or leaves it out of the manifest, is caught by the validators.
    ///         Writes no storage: one event, flat gas per node and round; the commit is unchanged.
    /// @param task A task in Verified mode.
    /// @param round The task's next round (its `nextRound`), at least 1.
    /// @param updateHash Hash of the update blob the node sends (its signed claim's hash).
    /// @param weight The weight the node signed.
    /// @param ticket The task owner's signature over `ticketDigest(task, round, msg.sender)`.
    function postClaim(uint256 task, uint256 round, bytes32 updateHash, uint256 weight, bytes calldata ticket)
        external
    {
        Task storage t = _tasks[task];
        address owner = t.owner;
        if (owner == address(0)) revert UnknownTask(task);
        if (t.mode != LedgerMode.Verified) revert WrongMode(task, t.mode);
        uint256 expected = t.nextRound;
        if (round != expected || round == 0) revert ClaimNotOnTime(task, expected, round);
        if (ECDSA.recover(_ethSigned(ticketDigest(task, round, msg.sender)), ticket) != owner) {
            revert NotSampled(task, round, msg.sender);
        }
        if (!reputation.isEligible(msg.sender)) revert NotEligible(msg.sender);
        emit ClaimPosted(task, round, msg.sender, updateHash, weight);
    }

    /// @dev MessageHashUtils.toEthSignedMessageHash, inlined: that library pulls in Strings and Bytes,
    ///      which need Cancun's mcopy, and these contracts target Shanghai (ganache runs no later fork).
    function _ethSigned(bytes32 digest) private pure returns (bytes32) {
        return keccak256(abi.encodePacked("\x19Ethereum Signed Message:\n32", digest));
    }

    /// @dev The shared body of commitRound and commitVerifiedRound.
    function _commit(
        uint256 task,
        uint256 round,
        bytes32 modelHash,
        string calldata uri,
        bytes32 parentHash,
        address[] calldata participants,
        uint256[] calldata scores,
        address[] calldata missed,
        address[] calldata penalized,
        address[] calldata joined,
        LedgerMode via
    ) private {
        _checkSequence(task, round, modelHash, parentHash, via);
        uint256 n = participants.length;
        if (n != scores.length) revert LengthMismatch(n, scores.length);
        _tasks[task].nextRound = uint64(round + 1);
        _rounds[task][round] = Round(modelHash, uint64(block.number), uint64(block.timestamp), uint32(n));
        if (bytes(uri).length != 0) _uriOverride[task][round] = uri;
        emit RoundCommitted(task, round, modelHash, parentHash, uri, n);
        _emitContributions(task, round, participants, scores);
        _recordMembers(task, joined, participants);
        _checkListed(task, missed, participants, participants[0:0], false);
        _checkListed(task, penalized, participants, missed, true);
        bool charges = missed.length + penalized.length > 0;
        if (charges) emit ChargesRecorded(task, round, missed, penalized);
        if (via == LedgerMode.Verified && charges) {
            // A verified round may still be disputed: its charges wait for its finality (settleCharges),
            // so a cooked round never costs a node reputation, and nothing has to be undone.
            _pendingCharges[task][round] = keccak256(abi.encode(missed, penalized));
            if (n > 0) reputation.recordRound(participants, scores, missed[0:0], missed[0:0]);
        } else if (n > 0 || charges) {
            reputation.recordRound(participants, scores, missed, penalized);
        }
    }

    /// @notice Apply a verified round's charges (the missed and penalized nodes its commit recorded in
    ///         ChargesRecorded) once its finality stands: finalized by the validator quorum and past its
    ///         complaint deadline, so no dispute can withdraw it. A disputed round's charges are never
    ///         applied. Anyone may call it: it only carries out what the commit recorded and the quorum
    ///         finalized (O(listed nodes), once per round).
    /// @param task Task id.
    /// @param round A verified round with unsettled charges.
    /// @param missed The round's missed nodes, exactly as committed.
    /// @param penalized The round's penalized nodes, exactly as committed.
    function settleCharges(uint256 task, uint256 round, address[] calldata missed, address[] calldata penalized)
        external
    {
        bytes32 pending = _pendingCharges[task][round];
        if (pending == bytes32(0)) revert NothingToSettle(task, round);
        if (keccak256(abi.encode(missed, penalized)) != pending) revert WrongCharges(task, round);
        uint256 deadline = complaintDeadline(task, round);
        if (!quorum.isFinalized(task, round) || block.timestamp <= deadline) {
            revert FinalityNotStanding(task, round, deadline);
        }
        delete _pendingCharges[task][round];
        emit ChargesSettled(task, round);
        reputation.recordRound(missed[0:0], new uint256[](0), missed, penalized);
    }

    /// @notice Whether a verified round holds charges that wait for its finality (see settleCharges).
    /// @param task Task id.
    /// @param round Round number.
    /// @return True if unsettled charges are held.
    function hasPendingCharges(uint256 task, uint256 round) external view returns (bool) {
        return _pendingCharges[task][round] != bytes32(0);
    }

    /// @notice Whether a node is a member of a task: it was a scored participant of one of its rounds.
    ///         Only members can be recorded as missed or penalized in the task.
    /// @param task Task id.
    /// @param node The node.
    /// @return True if a member.
    function isMember(uint256 task, address node) external view returns (bool) {
        return _member[task][node];
    }

    /// @notice Whether a task's commits may record a node as missed or penalized: it is a member of the
    ///         task, or a member of no task yet.
    /// @param task Task id.
    /// @param node The node.
    /// @return True if chargeable.
    function chargeable(uint256 task, address node) public view returns (bool) {
        return _member[task][node] || _firstTask[node] == 0;
    }

    /// @notice A task's record.
    /// @param task Task id.
    /// @return The task (owner, next round number, ledger mode, config hash, rules hash, blob base).
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

    /// @dev Revert unless the caller owns the task, the commit function (`via`) is the task's mode
    ///      (a verified task's round 0 goes through commitRound), `round` is its next round, the model
    ///      hash is not zero and `parentHash` is the previous round's model hash (zero for round 0) or
    ///      the parent a rebase set for this round (read only when it is not the previous one's).
    function _checkSequence(uint256 task, uint256 round, bytes32 modelHash, bytes32 parentHash, LedgerMode via)
        private
        view
    {
        Task storage t = _ownedTask(task);
        if (t.mode != via && !(via == LedgerMode.Plain && t.mode == LedgerMode.Verified && round == 0)) {
            revert WrongMode(task, t.mode);
        }
        uint256 expected = t.nextRound;
        if (round != expected) revert RoundOutOfOrder(task, expected, round);
        if (modelHash == bytes32(0)) revert EmptyModelHash();
        bytes32 parent = round == 0 ? bytes32(0) : _rounds[task][round - 1].modelHash;
        if (parentHash != parent && (parentHash == bytes32(0) || parentHash != _rebasedParent[task][round])) {
            revert ParentMismatch(task, parent, parentHash);
        }
    }

    /// @dev Emit one ContributionRecorded per participant, check that participants are sorted
    ///      strictly ascending and record each as a member of the task (one SLOAD each; the slot and a
    ///      TaskMember event are written only the first time). The sort check shares this loop: a revert
    ///      undoes the events, and one pass is cheaper.
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

    /// @dev Make the `joined` participants members of the task (sorted strictly ascending, each one a
    ///      participant: a merge walk over the sorted arrays, O(n)). Only these are read and written, so
    ///      a round whose participants are all members already pays nothing for membership; a node's
    ///      first-ever membership also records its first task (see chargeable).
    function _recordMembers(uint256 task, address[] calldata joined, address[] calldata participants) private {
        mapping(address => bool) storage members = _member[task];
        uint256 j = 0;
        address previous = address(0);
        for (uint256 k = 0; k < joined.length; ) {
            address node = joined[k];
            if (node <= previous) revert JoinedNotSorted(k);
            previous = node;
            unchecked {
                while (j < participants.length && participants[j] < node) ++j;
            }
            if (j == participants.length || participants[j] != node) revert NotParticipant(node);
            if (!members[node]) {
                members[node] = true;
                if (_firstTask[node] == 0) _firstTask[node] = task;
                emit TaskMember(task, node);
            }
            unchecked {
                ++k;
            }
        }
    }

    /// @dev Revert unless `list` (missed, or penalized when `penalties`) is sorted strictly ascending,
    ///      shares no node with the sorted arrays `a` and `b` (a merge walk: O(n), no storage) and holds
    ///      only nodes the task may charge (chargeable: one or two SLOADs per listed node).
    function _checkListed(
        uint256 task,
        address[] calldata list,
        address[] calldata a,
        address[] calldata b,
        bool penalties
    ) private view {
        mapping(address => bool) storage members = _member[task];
        uint256 i = 0;
        uint256 j = 0;
        address previous = address(0);
        for (uint256 k = 0; k < list.length; ) {
            address node = list[k];
            if (node <= previous) {
                if (penalties) revert PenalizedNotSorted(k);
                revert MissedNotSorted(k);
            }
            previous = node;
            // Both walks only advance (every array is sorted), so the whole check is O(n).
            unchecked {
                while (i < a.length && a[i] < node) ++i;
                while (j < b.length && b[j] < node) ++j;
            }
            if ((i < a.length && a[i] == node) || (j < b.length && b[j] == node)) revert ListedTwice(node);
            if (!members[node] && _firstTask[node] != 0) revert NotTaskMember(task, node);
            unchecked {
                ++k;
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

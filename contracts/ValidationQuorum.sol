// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ILedgerRounds} from "./interfaces/ILedgerRounds.sol";
import {IRoundStatus} from "./interfaces/IRoundStatus.sol";
import {IValidatorSet} from "./interfaces/IValidatorSet.sol";

/// @title ValidationQuorum
/// @notice Consensus on committed models: validators fetch a round's model, evaluate it on their own
///         held-out data and attest (hash, metric); a round is finalized once `quorum` distinct
///         validators attested the hash the ledger holds. For a verified round (the ledger holds the
///         Merkle root of its node-signed updates) only `attestVerified` counts: the validator re-derived
///         the model from those updates. A validator that finds a round does not re-derive disputes it;
///         once `quorum` validators disputed a round it is disputed and never (or no longer) finalized.
///         A vote (attestation or dispute) of an account whose VALIDATOR_ROLE was revoked stops counting
///         once anyone calls `discount` for it, while the round is not yet finalized (or disputed).
/// @dev One concern: attestations and disputes. Writes are O(1); no loop over validators: a revoked
///      validator's votes are taken out one round at a time by `discount` (permissionless), not by the
///      revocation, which cannot know the rounds the validator voted on without a loop.
contract ValidationQuorum is AccessControl, IValidatorSet, IRoundStatus {
    /// @notice Role of the accounts allowed to attest.
    bytes32 public constant VALIDATOR_ROLE = keccak256("VALIDATOR_ROLE");

    /// @notice The ledger whose rounds are attested.
    ILedgerRounds public immutable ledger;
    /// @notice Distinct attestations needed to finalize a round.
    uint256 public override quorum;

    mapping(uint256 => mapping(uint256 => uint256)) private _count;
    mapping(uint256 => mapping(uint256 => mapping(address => bool))) private _attested;
    mapping(uint256 => mapping(uint256 => bool)) private _finalized;
    mapping(uint256 => uint256) private _latestFinalizedPlusOne;
    mapping(uint256 => mapping(uint256 => uint256)) private _disputeCount;
    mapping(uint256 => mapping(uint256 => mapping(address => bool))) private _disputed;
    mapping(uint256 => mapping(uint256 => bool)) private _roundDisputed;

    /// @notice Longest dispute reason accepted, in bytes (bounds the event's gas).
    uint256 public constant MAX_REASON_BYTES = 200;

    /// @notice The attested hash is not the one the ledger committed for the round.
    error WrongHash(uint256 task, uint256 round, bytes32 committed, bytes32 attested);
    /// @notice This validator already attested the round.
    error AlreadyAttested(uint256 task, uint256 round, address validator);
    /// @notice A quorum must be at least 1.
    error InvalidQuorum(uint256 quorum);
    /// @notice No round of the task is finalized yet.
    error NothingFinalized(uint256 task);
    /// @notice A verified round is attested with attestVerified (the derivation was checked), not attest.
    error DerivationRequired(uint256 task, uint256 round);
    /// @notice attestVerified for a round committed without an updates root.
    error NotVerifiedRound(uint256 task, uint256 round);
    /// @notice The attested updates root is not the one the ledger committed.
    error WrongUpdatesRoot(uint256 task, uint256 round, bytes32 committed, bytes32 attested);
    /// @notice A commitment-mode round is attested with attestOutcomes (its leaf set was checked).
    error OutcomesCheckRequired(uint256 task, uint256 round);
    /// @notice attestOutcomes for a round committed without an outcomes root.
    error NotCommitmentRound(uint256 task, uint256 round);
    /// @notice The attested outcomes root is not the one the ledger committed.
    error WrongOutcomesRoot(uint256 task, uint256 round, bytes32 committed, bytes32 attested);
    /// @notice This validator already disputed the round.
    error AlreadyDisputed(uint256 task, uint256 round, address validator);
    /// @notice A dispute reason longer than MAX_REASON_BYTES.
    error ReasonTooLong(uint256 length);
    /// @notice Only votes of accounts that no longer hold VALIDATOR_ROLE can be discounted.
    error StillValidator(address validator);
    /// @notice The account has no vote on this round that still counts towards an unresolved outcome.
    error NothingToDiscount(uint256 task, uint256 round, address validator);
    /// @notice The round is finalized and its complaint deadline (ILedgerRounds.complaintDeadline) passed:
    ///         its finality stands.
    error FinalityStands(uint256 task, uint256 round, uint256 deadline);

    /// @notice The quorum changed.
    event QuorumChanged(uint256 quorum);
    /// @notice A validator attested a round's model with its evaluation metric (SCALE 1e6).
    event Attested(uint256 indexed task, uint256 indexed round, address indexed validator, bytes32 modelHash, uint256 metric);
    /// @notice A round reached the quorum.
    event RoundFinalized(uint256 indexed task, uint256 indexed round, bytes32 modelHash, uint256 attestations);
    /// @notice A validator re-derived a verified round from its updates and found it correct.
    event DerivationAttested(uint256 indexed task, uint256 indexed round, address indexed validator, bytes32 updatesRoot);
    /// @notice A validator checked a commitment-mode round's outcome leaves against their root.
    event OutcomesAttested(uint256 indexed task, uint256 indexed round, address indexed validator, bytes32 outcomesRoot);
    /// @notice A validator found that a round does not re-derive; `leaf` names what differed (a leaf
    ///         hash, a node address, or zero for the round as a whole).
    event Disputed(uint256 indexed task, uint256 indexed round, address indexed validator, bytes32 leaf, string reason);
    /// @notice A round's disputes reached the quorum: it is never (or no longer) finalized.
    event RoundDisputed(uint256 indexed task, uint256 indexed round, uint256 disputes);
    /// @notice The votes of an account that lost VALIDATOR_ROLE were taken out of a round.
    event VoteDiscounted(
        uint256 indexed task, uint256 indexed round, address indexed validator, bool attestation, bool dispute
    );

    /// @param admin Receives DEFAULT_ADMIN_ROLE (grants VALIDATOR_ROLE, sets the quorum).
    /// @param ledger_ The ModelLedger.
    /// @param quorum_ Initial quorum (>= 1).
    constructor(address admin, ILedgerRounds ledger_, uint256 quorum_) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        ledger = ledger_;
        _setQuorum(quorum_);
    }

    /// @notice Change the quorum (applies to rounds not yet finalized).
    /// @param quorum_ Distinct attestations needed, >= 1.
    function setQuorum(uint256 quorum_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setQuorum(quorum_);
    }

    /// @notice Attest that the committed model of a plain round is the one evaluated, with its metric.
    /// @param task Task id.
    /// @param round Round number (must be committed, without an updates root).
    /// @param modelHash Hash of the evaluated model; must equal the committed hash.
    /// @param metric Evaluation metric, e.g. accuracy, in SCALE units (1e6 == 1.0).
    function attest(uint256 task, uint256 round, bytes32 modelHash, uint256 metric) external onlyRole(VALIDATOR_ROLE) {
        if (ledger.updatesRoot(task, round) != bytes32(0)) revert DerivationRequired(task, round);
        if (ledger.outcomesRoot(task, round) != bytes32(0)) revert OutcomesCheckRequired(task, round);
        _attest(task, round, modelHash, metric);
    }

    /// @notice Attest a commitment-mode round: its published outcome leaves give the committed root,
    ///         name only nodes Active at the commit, and the model evaluates to `metric`.
    /// @param task Task id.
    /// @param round Round number (must be committed with an outcomes root).
    /// @param modelHash Hash of the evaluated model; must equal the committed hash.
    /// @param outcomesRoot The root the validator rebuilt from the leaves; must equal the committed root.
    /// @param metric Evaluation metric in SCALE units (1e6 == 1.0).
    function attestOutcomes(uint256 task, uint256 round, bytes32 modelHash, bytes32 outcomesRoot, uint256 metric)
        external
        onlyRole(VALIDATOR_ROLE)
    {
        bytes32 committed = ledger.outcomesRoot(task, round);
        if (committed == bytes32(0)) revert NotCommitmentRound(task, round);
        if (committed != outcomesRoot) revert WrongOutcomesRoot(task, round, committed, outcomesRoot);
        _attest(task, round, modelHash, metric);
        emit OutcomesAttested(task, round, msg.sender, outcomesRoot);
    }

    /// @inheritdoc IValidatorSet
    function isValidator(address account) external view override returns (bool) {
        return hasRole(VALIDATOR_ROLE, account);
    }

    /// @notice Attest that a verified round's model re-derives from its committed updates (signatures,
    ///         eligibility, weights, aggregate and recomputable scores checked) and evaluates to `metric`.
    /// @param task Task id.
    /// @param round Round number (must be committed with an updates root).
    /// @param modelHash Hash of the re-derived model; must equal the committed hash.
    /// @param updatesRoot The updates root the derivation started from; must equal the committed root.
    /// @param metric Evaluation metric in SCALE units (1e6 == 1.0).
    function attestVerified(uint256 task, uint256 round, bytes32 modelHash, bytes32 updatesRoot, uint256 metric)
        external
        onlyRole(VALIDATOR_ROLE)
    {
        bytes32 committed = ledger.updatesRoot(task, round);
        if (committed == bytes32(0)) revert NotVerifiedRound(task, round);
        if (committed != updatesRoot) revert WrongUpdatesRoot(task, round, committed, updatesRoot);
        _attest(task, round, modelHash, metric);
        emit DerivationAttested(task, round, msg.sender, updatesRoot);
    }

    /// @notice Dispute a committed round: it did not re-derive (or a node's update was left out without
    ///         disclosure). A validator may dispute a round it attested before, on new evidence such as a
    ///         node's omission complaint. Once `quorum` validators disputed, the round is disputed: it
    ///         never finalizes, and a finality it already reached is withdrawn (`isFinalized` false)
    ///         until the round's complaint deadline; after it, a finalized round cannot be disputed.
    /// @param task Task id.
    /// @param round Round number (must be committed).
    /// @param leaf What differed: a leaf hash, a node address (left-padded), or zero for the round.
    /// @param reason What differed, at most MAX_REASON_BYTES bytes.
    function dispute(uint256 task, uint256 round, bytes32 leaf, string calldata reason)
        external
        onlyRole(VALIDATOR_ROLE)
    {
        ledger.getRound(task, round);
        if (_finalized[task][round] && !_roundDisputed[task][round]) {
            uint256 deadline = ledger.complaintDeadline(task, round);
            if (block.timestamp > deadline) revert FinalityStands(task, round, deadline);
        }
        if (bytes(reason).length > MAX_REASON_BYTES) revert ReasonTooLong(bytes(reason).length);
        if (_disputed[task][round][msg.sender]) revert AlreadyDisputed(task, round, msg.sender);
        _disputed[task][round][msg.sender] = true;
        uint256 count = ++_disputeCount[task][round];
        emit Disputed(task, round, msg.sender, leaf, reason);
        if (count >= quorum && !_roundDisputed[task][round]) {
            _roundDisputed[task][round] = true;
            emit RoundDisputed(task, round, count);
        }
    }

    /// @notice Take the votes of an account that no longer holds VALIDATOR_ROLE out of a round: its
    ///         attestation if the round is not finalized yet, its dispute if the round is not disputed
    ///         yet. Anyone may call it (O(1)); a vote that already finalized or disputed the round stands.
    /// @param task Task id.
    /// @param round Round number.
    /// @param validator The former validator.
    function discount(uint256 task, uint256 round, address validator) external {
        if (hasRole(VALIDATOR_ROLE, validator)) revert StillValidator(validator);
        bool attestation = _attested[task][round][validator] && !_finalized[task][round];
        bool disputeVote = _disputed[task][round][validator] && !_roundDisputed[task][round];
        if (!attestation && !disputeVote) revert NothingToDiscount(task, round, validator);
        if (attestation) {
            _attested[task][round][validator] = false;
            _count[task][round] -= 1;
        }
        if (disputeVote) {
            _disputed[task][round][validator] = false;
            _disputeCount[task][round] -= 1;
        }
        emit VoteDiscounted(task, round, validator, attestation, disputeVote);
    }

    /// @dev Record one attestation; finalize at the quorum unless the round is disputed.
    function _attest(uint256 task, uint256 round, bytes32 modelHash, uint256 metric) private {
        bytes32 committed = ledger.getRound(task, round).modelHash;
        if (committed != modelHash) revert WrongHash(task, round, committed, modelHash);
        if (_attested[task][round][msg.sender]) revert AlreadyAttested(task, round, msg.sender);
        _attested[task][round][msg.sender] = true;
        uint256 count = ++_count[task][round];
        emit Attested(task, round, msg.sender, modelHash, metric);
        if (count >= quorum && !_finalized[task][round] && !_roundDisputed[task][round]) {
            _finalized[task][round] = true;
            if (round + 1 > _latestFinalizedPlusOne[task]) _latestFinalizedPlusOne[task] = round + 1;
            emit RoundFinalized(task, round, modelHash, count);
        }
    }

    /// @notice Whether a round reached the quorum and is not disputed.
    /// @param task Task id.
    /// @param round Round number.
    /// @return True if finalized.
    function isFinalized(uint256 task, uint256 round) external view override returns (bool) {
        return _finalized[task][round] && !_roundDisputed[task][round];
    }

    /// @notice Whether a quorum of validators disputed a round.
    /// @param task Task id.
    /// @param round Round number.
    /// @return True if disputed.
    function isDisputed(uint256 task, uint256 round) external view override returns (bool) {
        return _roundDisputed[task][round];
    }

    /// @notice Number of distinct validators that disputed a round.
    /// @param task Task id.
    /// @param round Round number.
    /// @return Count.
    function disputeCount(uint256 task, uint256 round) external view returns (uint256) {
        return _disputeCount[task][round];
    }

    /// @notice Whether a validator disputed a round.
    /// @param task Task id.
    /// @param round Round number.
    /// @param validator Address of the validator.
    /// @return True if it disputed.
    function hasDisputed(uint256 task, uint256 round, address validator) external view returns (bool) {
        return _disputed[task][round][validator];
    }

    /// @notice Number of distinct attestations of a round.
    /// @param task Task id.
    /// @param round Round number.
    /// @return Count.
    function attestations(uint256 task, uint256 round) external view returns (uint256) {
        return _count[task][round];
    }

    /// @notice Whether a validator attested a round.
    /// @param task Task id.
    /// @param round Round number.
    /// @param validator Address of the validator.
    /// @return True if it attested.
    function hasAttested(uint256 task, uint256 round, address validator) external view returns (bool) {
        return _attested[task][round][validator];
    }

    /// @notice The newest round of a task that reached the quorum; reverts NothingFinalized if none. A
    ///         round disputed after it reached the quorum stays counted here: check isFinalized (the
    ///         Python wrapper walks back past disputed rounds).
    /// @param task Task id.
    /// @return The round number.
    function latestFinalized(uint256 task) external view returns (uint256) {
        uint256 plusOne = _latestFinalizedPlusOne[task];
        if (plusOne == 0) revert NothingFinalized(task);
        return plusOne - 1;
    }

    /// @dev Validate and store the quorum; emits QuorumChanged.
    function _setQuorum(uint256 quorum_) private {
        if (quorum_ == 0) revert InvalidQuorum(quorum_);
        quorum = quorum_;
        emit QuorumChanged(quorum_);
    }
}

// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ILedgerRounds} from "./interfaces/ILedgerRounds.sol";

/// @title ValidationQuorum
/// @notice Consensus on committed models: validators fetch a round's model, evaluate it on their own
///         held-out data and attest (hash, metric); a round is finalized once `quorum` distinct
///         validators attested the hash the ledger holds.
/// @dev One concern: attestations. Writes are O(1); no loop over validators.
contract ValidationQuorum is AccessControl {
    /// @notice Role of the accounts allowed to attest.
    bytes32 public constant VALIDATOR_ROLE = keccak256("VALIDATOR_ROLE");

    /// @notice The ledger whose rounds are attested.
    ILedgerRounds public immutable ledger;
    /// @notice Distinct attestations needed to finalize a round.
    uint256 public quorum;

    mapping(uint256 => mapping(uint256 => uint256)) private _count;
    mapping(uint256 => mapping(uint256 => mapping(address => bool))) private _attested;
    mapping(uint256 => mapping(uint256 => bool)) private _finalized;
    mapping(uint256 => uint256) private _latestFinalizedPlusOne;

    /// @notice The attested hash is not the one the ledger committed for the round.
    error WrongHash(uint256 task, uint256 round, bytes32 committed, bytes32 attested);
    /// @notice This validator already attested the round.
    error AlreadyAttested(uint256 task, uint256 round, address validator);
    /// @notice A quorum must be at least 1.
    error InvalidQuorum(uint256 quorum);
    /// @notice No round of the task is finalized yet.
    error NothingFinalized(uint256 task);

    /// @notice The quorum changed.
    event QuorumChanged(uint256 quorum);
    /// @notice A validator attested a round's model with its evaluation metric (SCALE 1e6).
    event Attested(uint256 indexed task, uint256 indexed round, address indexed validator, bytes32 modelHash, uint256 metric);
    /// @notice A round reached the quorum.
    event RoundFinalized(uint256 indexed task, uint256 indexed round, bytes32 modelHash, uint256 attestations);

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

    /// @notice Attest that the committed model of a round is the one evaluated, with its metric.
    /// @param task Task id.
    /// @param round Round number (must be committed).
    /// @param modelHash Hash of the evaluated model; must equal the committed hash.
    /// @param metric Evaluation metric, e.g. accuracy, in SCALE units (1e6 == 1.0).
    function attest(uint256 task, uint256 round, bytes32 modelHash, uint256 metric) external onlyRole(VALIDATOR_ROLE) {
        bytes32 committed = ledger.getRound(task, round).modelHash;
        if (committed != modelHash) revert WrongHash(task, round, committed, modelHash);
        if (_attested[task][round][msg.sender]) revert AlreadyAttested(task, round, msg.sender);
        _attested[task][round][msg.sender] = true;
        uint256 count = ++_count[task][round];
        emit Attested(task, round, msg.sender, modelHash, metric);
        if (count >= quorum && !_finalized[task][round]) {
            _finalized[task][round] = true;
            if (round + 1 > _latestFinalizedPlusOne[task]) _latestFinalizedPlusOne[task] = round + 1;
            emit RoundFinalized(task, round, modelHash, count);
        }
    }

    /// @notice Whether a round reached the quorum.
    /// @param task Task id.
    /// @param round Round number.
    /// @return True if finalized.
    function isFinalized(uint256 task, uint256 round) external view returns (bool) {
        return _finalized[task][round];
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

    /// @notice The newest finalized round of a task.
    /// @param task Task id.
    /// @return The round number; reverts NothingFinalized if there is none.
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

// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title ILedgerRounds
/// @notice The part of ModelLedger that ValidationQuorum and ReputationCheckpoints read: committed
///         rounds, their updates roots and their outcomes roots.
/// @dev Implemented by `ModelLedger`, whose `Round` is this struct (not a copy of it).
interface ILedgerRounds {
    /// @notice A committed round: the model hash, the block number and timestamp of the commit, and
    ///         the number of scored participants. Round 0 is the initial model.
    struct Round {
        bytes32 modelHash;
        uint64 blockNumber;
        uint64 timestamp;
        uint32 participantCount;
    }

    /// @notice The round was never committed.
    error UnknownRound(uint256 task, uint256 round);

    /// @notice One committed round; reverts with UnknownRound if it was never committed.
    /// @param task Task id.
    /// @param round Round number.
    /// @return The round record.
    function getRound(uint256 task, uint256 round) external view returns (Round memory);

    /// @notice The Merkle root of a verified round's disclosed updates; zero for a plain round.
    /// @param task Task id.
    /// @param round Round number; reverts UnknownRound if never committed.
    /// @return The root.
    function updatesRoot(uint256 task, uint256 round) external view returns (bytes32);

    /// @notice The account that created a task and alone commits its rounds (zero if no such task).
    /// @param task Task id.
    /// @return The owner.
    function taskOwner(uint256 task) external view returns (address);

    /// @notice The Merkle root of a commitment-mode round's outcome leaves; zero for other rounds.
    /// @param task Task id.
    /// @param round Round number; reverts UnknownRound if never committed.
    /// @return The root.
    function outcomesRoot(uint256 task, uint256 round) external view returns (bytes32);

    /// @notice The last second (block timestamp) at which a node may complain about a round and a
    ///         finalized round may be disputed: the commit's timestamp plus the ledger's complaint window.
    /// @param task Task id.
    /// @param round Round number; reverts UnknownRound if never committed.
    /// @return The deadline, in seconds since the epoch.
    function complaintDeadline(uint256 task, uint256 round) external view returns (uint256);
}

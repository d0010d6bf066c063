// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IRoundStatus
/// @notice The part of ValidationQuorum that ModelLedger reads to let a task recover from a disputed
///         round: whether a round is finalized or disputed.
/// @dev Implemented by `ValidationQuorum`.
interface IRoundStatus {
    /// @notice Whether a round reached the quorum and is not disputed.
    /// @param task Task id.
    /// @param round Round number.
    /// @return True if finalized.
    function isFinalized(uint256 task, uint256 round) external view returns (bool);

    /// @notice Whether a quorum of validators disputed a round.
    /// @param task Task id.
    /// @param round Round number.
    /// @return True if disputed.
    function isDisputed(uint256 task, uint256 round) external view returns (bool);
}

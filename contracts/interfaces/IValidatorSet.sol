// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IValidatorSet
/// @notice The part of ValidationQuorum that ReputationCheckpoints reads: who validates, and how many
///         of them make a quorum.
/// @dev Implemented by `ValidationQuorum`; one validator set attests rounds and checkpoints alike.
interface IValidatorSet {
    /// @notice Whether an account holds the validator role.
    /// @param account The account.
    /// @return True if it may attest.
    function isValidator(address account) external view returns (bool);

    /// @notice Distinct attestations needed to finalize.
    /// @return The quorum.
    function quorum() external view returns (uint256);
}

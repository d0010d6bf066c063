// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IStatusHook
/// @notice Contract the registry tells about every change of a node's Active status, so the per-round
///         commit can check eligibility in the slot it updates anyway.
/// @dev Implemented by `Reputation`; `NodeRegistry` calls it (`statusHook`, set by its constructor).
interface IStatusHook {
    /// @notice The mirrored Active status of a node changed (pushed by the registry).
    event EligibilityChanged(address indexed node, bool active);

    /// @notice Called by the registry in the same transaction as every change of a node's Active status.
    /// @param node Address of the node.
    /// @param active Whether the node is now Active in the registry.
    function statusChanged(address node, bool active) external;
}

// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title ISuspender
/// @notice The part of NodeRegistry that Reputation calls to suspend a node automatically when its
///         reputation falls below the threshold.
/// @dev Implemented by `NodeRegistry`; `Reputation` holds it as `registry` and must be granted the
///      registry's SUSPENDER_ROLE.
interface ISuspender {
    /// @notice Suspend an active or pending node; it can be approved again later.
    /// @param node Address of the node.
    function suspend(address node) external;
}

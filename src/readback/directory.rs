//! Concur's users as adoption and drift see them, whatever API lists them: [`read_all_users`]
//! pages Bulk User v3.1 under `concur.api = "v1"` and Identity v4.1 + Spend User v4.1 under
//! `"v4"`, and answers the same [`ListedUser`]s, so the rest of `readback` is API-neutral.

use crate::concur::readback::ConcurUser;
use crate::concur::v4::ReadUser;
use crate::concur::{ConcurClient, ConcurError};
use crate::config::ConcurApi;
use crate::model::{Field, User};

/// One user as Concur reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedUser {
    /// Concur's UUID of the user, where the API gives the one v4 writes address (v4 only).
    pub uuid: Option<String>,
    /// What Concur reports, in canonical form (its employee id included); empty values absent.
    pub user: User,
    /// Fields Concur did not let us read (a scope missing, an attribute the API lacks): never
    /// compared, never taken as empty.
    pub unreadable: Vec<Field>,
}

impl ListedUser {
    pub fn employee_id(&self) -> &str {
        self.user.employee_id()
    }

    pub fn login_id(&self) -> &str {
        self.user.login_id()
    }

    pub fn readable(&self, field: Field) -> bool {
        !self.unreadable.contains(&field)
    }

    /// Whether Concur reports the user active, if `active` was read.
    pub fn active(&self) -> Option<bool> {
        self.readable(Field::ACTIVE).then(|| self.user.is_active())
    }

    /// A user as Bulk User v3.1 lists it: identity fields only; a blank middle name says
    /// nothing about the middle initial.
    pub fn from_v1(cu: &ConcurUser) -> ListedUser {
        let mut u = User::new();
        u.set(Field::EMPLOYEE_ID, cu.employee_id.as_str());
        u.set(Field::LOGIN_ID, cu.login_id.as_str());
        u.set(Field::ACTIVE, if cu.active { "Y" } else { "N" });
        u.set(Field::FIRST_NAME, cu.first_name.as_str());
        u.set(Field::LAST_NAME, cu.last_name.as_str());
        let initial: String = cu.middle_name.trim().chars().take(1).collect();
        u.set(Field::MIDDLE_INITIAL, initial.as_str());
        u.set(Field::EMAIL, cu.email.as_str());
        let mut read = vec![
            Field::EMPLOYEE_ID,
            Field::LOGIN_ID,
            Field::ACTIVE,
            Field::FIRST_NAME,
            Field::LAST_NAME,
            Field::EMAIL,
        ];
        if !initial.is_empty() {
            read.push(Field::MIDDLE_INITIAL);
        }
        ListedUser {
            uuid: None,
            user: u,
            unreadable: Field::all().filter(|f| !read.contains(f)).collect(),
        }
    }

    /// A user as Identity v4.1 (and Spend User v4.1) return it.
    pub fn from_v4(ru: ReadUser) -> ListedUser {
        ListedUser {
            uuid: Some(ru.uuid),
            user: ru.user,
            unreadable: ru.unreadable,
        }
    }
}

/// Every user of the company, through the API `api` names.
pub async fn read_all_users(
    api: ConcurApi,
    client: &ConcurClient,
) -> Result<Vec<ListedUser>, ConcurError> {
    Ok(match api {
        ConcurApi::V1 => crate::concur::readback::all_users(client)
            .await?
            .iter()
            .map(ListedUser::from_v1)
            .collect(),
        ConcurApi::V4 => crate::concur::v4::read::all_users(client)
            .await?
            .users
            .into_iter()
            .map(ListedUser::from_v4)
            .collect(),
    })
}

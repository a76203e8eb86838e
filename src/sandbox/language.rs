//! The language the sandbox portal answers in. Real portals localise their error
//! messages (a large share of Bitrix24 portals answer in Russian) while codes, statuses
//! and fields stay the same; a Russian sandbox lets tests prove the server never depends
//! on a message's words.

use super::reply::{ApiError, V3Error};

/// The portal's language.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Language {
    /// Messages as the English documentation shows them.
    #[default]
    English,
    /// Messages in Russian; codes, statuses and fields unchanged.
    Russian,
}

impl Language {
    /// `error` with its messages in this language.
    pub(crate) fn localise(self, error: ApiError) -> ApiError {
        match (self, error) {
            (Language::English, e) => e,
            (Language::Russian, ApiError::V3(e)) => ApiError::V3(russian_v3(e)),
            (Language::Russian, ApiError::V1(mut e)) => {
                e.description = russian(&e.description);
                ApiError::V1(e)
            }
        }
    }
}

fn russian_v3(mut e: V3Error) -> V3Error {
    e.message = russian(&e.message);
    for v in &mut e.validation {
        v.message = russian(&v.message);
    }
    e
}

/// A Russian message for an English one; the field names in backticks are kept.
fn russian(english: &str) -> String {
    let known = match english {
        "Task not found" => "Задача не найдена",
        "Message not found" => "Сообщение не найдено",
        "Message is not from task chat" => "Сообщение не из чата задачи",
        "Access denied" | "Access denied." => "Доступ запрещён",
        "Validation error" => "Ошибка валидации",
        "Error validating the request object" => "Ошибка при валидации объекта запроса",
        "The field value cannot be empty" => "Значение поля не может быть пустым",
        "Task id must be set" => "Не указан идентификатор задачи",
        "Task id must be positive" => "Идентификатор задачи должен быть положительным",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_string();
    }
    // Messages naming a field keep the name: "Поле `text`: ошибка".
    match english.split('`').nth(1) {
        Some(field) => format!("Поле `{field}` заполнено неверно"),
        None => "Ошибка в запросе".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn russian_messages_keep_codes_and_fields() {
        let e = V3Error::request_field("taskId", "Task not found");
        let ApiError::V3(ru) = Language::Russian.localise(ApiError::V3(e.clone())) else {
            panic!("v3 stays v3");
        };
        assert_eq!((ru.status, ru.code), (e.status, e.code));
        assert_eq!(ru.validation[0].field.as_deref(), Some("taskId"));
        assert_eq!(ru.validation[0].message, "Задача не найдена");
        assert_eq!(
            russian("Required field `messageId` is missing"),
            "Поле `messageId` заполнено неверно"
        );
        assert!(!russian("Something new").is_ascii());
    }
}
